# One image for the web server and the workers. The CUDA build of torch in requirements.txt
# runs on CPU too; workers see their GPU through the compose file's device reservation.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY requirements.txt requirements-nodeps.txt ./
RUN pip install --no-cache-dir -r requirements.txt && pip install --no-cache-dir --no-deps -r requirements-nodeps.txt && pip check
COPY . .
RUN DEBUG=1 MASKSEL_VAR_DIR=/tmp/build python manage.py collectstatic --noinput -v 0
EXPOSE 8000
CMD ["python", "-m", "daphne", "-b", "0.0.0.0", "-p", "8000", "webapp.asgi:application"]
