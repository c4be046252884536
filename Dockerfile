# One image for the three Python roles of docker-compose.yml: web (gunicorn,
# the default CMD), worker (celery worker) and beat (celery beat).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=llmobserve_site.settings \
    LLMOBSERVE_VAR_DIR=/app/var \
    STATIC_ROOT=/app/staticfiles

WORKDIR /app

# Dependencies first, so a code change does not reinstall them.
COPY requirements.txt ./
RUN pip install -r requirements.txt
COPY observe_sdk/ ./observe_sdk/
RUN pip install ./observe_sdk

# The Django project: settings/urls/wsgi/celery, every app, templates, static.
COPY manage.py ./
COPY llmobserve_site/ ./llmobserve_site/
COPY projects/ ./projects/
COPY pricing/ ./pricing/
COPY events/ ./events/
COPY insights/ ./insights/
COPY dashboard/ ./dashboard/
COPY templates/ ./templates/
COPY static/ ./static/

# Static files are baked into the image (served by WhiteNoise).  A throwaway
# SECRET_KEY keeps settings from writing a key file into the image.
RUN SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput

# Run as an unprivileged user; var/ (scratch) and beat/ (beat's schedule, a
# volume in docker-compose) are the only writable places.
RUN useradd --system --uid 10001 --no-create-home --home-dir /app llmobserve \
    && mkdir -p /app/var /app/beat \
    && chown -R llmobserve /app/var /app/beat
USER llmobserve

EXPOSE 8000
# Workers: gunicorn reads WEB_CONCURRENCY (default 1 when unset; compose sets it).
CMD ["gunicorn", "llmobserve_site.wsgi:application", "--bind", "0.0.0.0:8000", "--access-logfile", "-"]
