-- docker-compose.yml: one PostgreSQL for the service (database umpass, made by the image)
-- and for the Keycloak cluster.
CREATE DATABASE keycloak OWNER umpass;
