# One image for the four roles of docker-compose.yml: web (gunicorn, the
# default CMD), proxy (nginx in front of it), worker (celery worker) and beat
# (celery beat).  Debian bookworm, as CI: the nginx it installs is the one
# .ci/run tests the configuration with.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=llmobserve_site.settings \
    LLMOBSERVE_VAR_DIR=/app/var \
    STATIC_ROOT=/app/staticfiles

WORKDIR /app

# nginx from Debian, for the proxy role (deploy/nginx.py starts it unprivileged).
RUN apt-get update \
    && apt-get install -y --no-install-recommends nginx \
    && rm -rf /var/lib/apt/lists/*

# Dependencies first, so a code change does not reinstall them.
COPY requirements.txt ./
RUN pip install -r requirements.txt
COPY observe_sdk/ ./observe_sdk/
RUN pip install ./observe_sdk

# The Django project: settings/urls/wsgi/celery, every app, templates, static.
COPY manage.py ./
COPY deploy/ ./deploy/
COPY llmobserve_site/ ./llmobserve_site/
COPY projects/ ./projects/
COPY pricing/ ./pricing/
COPY events/ ./events/
COPY insights/ ./insights/
COPY dashboard/ ./dashboard/
COPY attribution/ ./attribution/
COPY budgets/ ./budgets/
COPY otlp/ ./otlp/
COPY reconciliation/ ./reconciliation/
COPY templates/ ./templates/
COPY static/ ./static/

# Static files are baked into the image (served by WhiteNoise).  A throwaway
# SECRET_KEY keeps settings from writing a key file into the image.
RUN SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput

# Run as an unprivileged user; var/ (scratch), beat/ (beat's schedule, a
# volume in docker-compose) and /tmp (nginx's config, pid and temp folders)
# are the only writable places.
RUN useradd --system --uid 10001 --no-create-home --home-dir /app llmobserve \
    && mkdir -p /app/var /app/beat \
    && chown -R llmobserve /app/var /app/beat
USER llmobserve

# 8000: gunicorn (web), 8080: nginx (proxy, the published one).
EXPOSE 8000 8080
# Workers: gunicorn reads WEB_CONCURRENCY (default 1 when unset; compose sets it).
CMD ["gunicorn", "-c", "deploy/gunicorn.conf.py", "llmobserve_site.wsgi:application", "--bind", "0.0.0.0:8000"]
