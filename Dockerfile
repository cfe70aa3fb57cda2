FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY ledger ledger
COPY workers workers
COPY projections projections
COPY entrypoints entrypoints
RUN pip install --no-cache-dir .
ENTRYPOINT ["ledger"]
CMD ["--help"]
