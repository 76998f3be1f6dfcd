# The service image used by docker-compose.yml (not exercised by CI here: no Docker engine).
FROM python:3.11-slim
WORKDIR /app
# Packages only from the hashed lock (its own layer, rebuilt when the lock changes); the
# project is then built with the locked setuptools: no index, nothing unhashed.
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY provider ./provider
COPY keycloak_config ./keycloak_config
RUN pip install --no-cache-dir --no-index --no-deps --no-build-isolation . && useradd --system umpass
USER umpass
EXPOSE 5000
CMD ["umpass", "serve", "--host", "0.0.0.0", "--port", "5000", "--workers", "2", "--threads", "8"]
