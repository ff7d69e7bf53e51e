# Serving image: the NGC Triton release whose server matches the local binary (2.51 = 24.10),
# plus this project's Python package, so the Python-backend models import the same code that
# training uses.
ARG TRITON_IMAGE=nvcr.io/nvidia/tritonserver:24.10-py3
FROM ${TRITON_IMAGE}

WORKDIR /opt/gesture-recognition
COPY pyproject.toml README.md ./
COPY src ./src
COPY training ./training
COPY export ./export
COPY client ./client
COPY model_repository ./model_repository
COPY models ./models
# Serving dependencies only (numpy<2, pillow, onnxruntime); no torch in the serving image.
RUN python3 -m pip install --no-cache-dir . \
 && python3 -c "import gesture_recognition.pipeline"

EXPOSE 8000 8001 8002
CMD ["tritonserver", "--model-repository=/models", "--model-control-mode=none"]
