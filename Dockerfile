FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PORT=8000
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY service ./service
COPY Procfile ./
RUN pip install --no-cache-dir ".[service,gunicorn]"
# Run as an unprivileged user; /data (the SQLite volume) belongs to it.
RUN useradd --system --uid 10001 --home-dir /app kapi && mkdir -p /data && chown kapi:kapi /data
USER kapi
EXPOSE 8000
CMD ["sh", "-c", "exec uvicorn service.main:app --host 0.0.0.0 --port ${PORT} --no-proxy-headers --no-server-header --no-access-log --http service.protocol:HttpProtocol --timeout-graceful-shutdown 10"]
