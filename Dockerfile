# One image for every Python service of docker-compose.yml: control API, job worker, console (Streamlit),
# MLflow server and the one-shot set-up. The command chooses the service; the default is the API.
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app \
    OPCON_HOME=/srv/opcon/state

# git: every DVC project is a git repository
RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 10001 --user-group opcon \
    && mkdir -p /srv/opcon/state /srv/opcon/projects /srv/opcon/dvc-remote /srv/mlflow/artifacts \
    && chown -R opcon:opcon /srv/opcon /srv/mlflow

WORKDIR /app
# the runtime pins only: the test and lint tools of requirements-dev.txt stay out of the image
COPY requirements.txt .
RUN pip install -r requirements.txt

# the image has no .git: training runs record the commit given at build time
# (docker compose build --build-arg OPCON_GIT_COMMIT=$(git rev-parse HEAD))
ARG OPCON_GIT_COMMIT=unknown
ENV OPCON_GIT_COMMIT=${OPCON_GIT_COMMIT}

# the source stays owned by root: the services read it, only the volumes under /srv are theirs
COPY . .

USER opcon
EXPOSE 8000 8501 5000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
CMD ["gunicorn", "-c", "control_api/gunicorn_conf.py", "control_api:create_app()"]
