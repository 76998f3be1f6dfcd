# The service image used by docker-compose.yml (not exercised by CI here: no Docker engine).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY provider ./provider
COPY keycloak_config ./keycloak_config
RUN pip install --no-cache-dir . && useradd --system umpass
USER umpass
EXPOSE 5000
CMD ["umpass", "serve", "--host", "0.0.0.0", "--port", "5000", "--workers", "2", "--threads", "8"]
