# regogate gateway image (see docs/deployment.md). Docker does not run on the machines this
# project is developed on, so this file and docker-compose.yml are kept correct by reading;
# tests/e2e/test_deploy_files.py checks that the config they reference validates.
FROM python:3.12-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY pep ./pep
COPY adapters ./adapters
COPY idp ./idp
COPY policies ./policies
RUN pip install --no-cache-dir . && useradd --system --uid 10001 regogate \
    && mkdir /bundle /var/lib/regogate && chown regogate /bundle /var/lib/regogate
USER regogate
EXPOSE 8080
ENTRYPOINT ["regogate"]
CMD ["serve", "--config", "/etc/regogate/regogate.yaml"]
