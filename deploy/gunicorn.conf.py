"""gunicorn settings for the collector's web role.

Used by docker-compose.yml's web service, the Dockerfile's default command,
scripts/smoke_production.sh and `make run` (`gunicorn -c deploy/gunicorn.conf.py …`).

gthread workers: a request is handed to one of `threads` threads while the
worker's main thread keeps accepting and heartbeating, so one slow request
never gets the whole worker killed, and a connection that sends nothing yet
waits in the worker's poller rather than in a thread.  A client that sends a
request slowly would still hold a thread while gunicorn reads it, which is
why gunicorn is never published directly: nginx (deploy/nginx.conf.template)
or, under `make run`, scripts/run.py's front reads each request whole first.

Workers: WEB_CONCURRENCY (gunicorn's own variable; compose sets it).  Anything
else can be overridden on the command line or with GUNICORN_CMD_ARGS.
"""

worker_class = "gthread"
threads = 4
# A worker whose main loop stops heartbeating this long is restarted (with
# gthread the heartbeat comes from the main thread, not from the request).
timeout = 60
graceful_timeout = 30
# Kept-alive connections from nginx; nginx drops idle ones after 4 s.
keepalive = 5
# gunicorn's defaults, stated: a request line of 8 KiB, 100 header fields of 8 KiB.
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190
accesslog = "-"
# No control socket: several gunicorns on one machine (make run, the smoke,
# tests) would share its one default path, and the image's home is read-only.
control_socket_disable = True
