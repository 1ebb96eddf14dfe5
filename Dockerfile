FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY project ./project
COPY runs ./runs
COPY runs_dev ./runs_dev
COPY runs_simulator ./runs_simulator
COPY manage.py ./
RUN pip install --no-cache-dir .
EXPOSE 8000
CMD ["uvicorn", "project.asgi:application", "--host", "0.0.0.0", "--port", "8000"]
