"""runs: start OpenAI model runs from Django and track each to a terminal state with Celery."""
