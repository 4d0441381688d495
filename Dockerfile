# One image, two roles: `mlsvc serve` (the default) and `mlsvc worker` (docker run IMAGE worker).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    MLSVC_HOME=/var/lib/mlsvc MLSVC_HOST=0.0.0.0 MLSVC_PORT=8080
WORKDIR /app

COPY pyproject.toml README.md ./
COPY mlsvc ./mlsvc
RUN pip install --no-cache-dir '.[scale]'

COPY api ./api
COPY datasources ./datasources
COPY models ./models

RUN useradd --create-home --uid 10001 mlsvc && mkdir -p /var/lib/mlsvc && chown mlsvc /var/lib/mlsvc
USER mlsvc
VOLUME ["/var/lib/mlsvc"]
EXPOSE 8080

ENTRYPOINT ["mlsvc"]
CMD ["serve"]
