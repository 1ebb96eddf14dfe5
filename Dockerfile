FROM python:3.11-slim
# PYTHONPATH: the demo host (`project`) and dev tools (`runs_dev`) are not in the wheel; they are
# imported from /app, like from a checkout.
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PYTHONPATH=/app
WORKDIR /app
COPY pyproject.toml README.md constraints.txt ./
COPY project ./project
COPY runs ./runs
COPY runs_dev ./runs_dev
COPY runs_simulator ./runs_simulator
COPY manage.py ./
# The tested versions (constraints.txt); the extras the compose services use: the demo host and
# the simulator, PostgreSQL, Flower.
RUN pip install --no-cache-dir -c constraints.txt ".[demo,postgres,flower]"
EXPOSE 8000
CMD ["uvicorn", "project.asgi:application", "--host", "0.0.0.0", "--port", "8000"]
