# Serving image: the NGC Triton release whose server matches the local binary (2.51 = 24.10),
# plus this project's Python package, so the Python-backend models import the same code that
# training uses. Keep TRITON_RELEASE equal to .env and export/trt_engines.py: TensorRT engines
# only load in the release that built them (tests/unit/test_deployment.py checks this).
ARG TRITON_RELEASE=24.10
FROM nvcr.io/nvidia/tritonserver:${TRITON_RELEASE}-py3

LABEL org.opencontainers.image.title="gesture-recognition-triton" \
      org.opencontainers.image.description="Triton with the gesture-recognition package and models" \
      org.opencontainers.image.licenses="Apache-2.0"

WORKDIR /opt/gesture-recognition
COPY pyproject.toml README.md ./
COPY src ./src
COPY training ./training
COPY export ./export
COPY client ./client
COPY benchmarks ./benchmarks
# model.py of each Python-backend model; build_repository copies them from here.
COPY model_repository ./model_repository
COPY models ./models
# Editable on purpose: the package finds models/ and model_repository/ relative to its own
# source files (artifacts.shipped_models_dir), which a plain install into dist-packages would
# break. Serving dependencies only (numpy<2, pillow, onnxruntime); no torch in this image.
# The repository build at the end proves, at image build time, that the package resolves the
# shipped models and the Python-backend code and that the configs match the ONNX files.
RUN python3 -m pip install --no-cache-dir -e . \
 && python3 -c "import gesture_recognition.pipeline" \
 && python3 export/build_engines.py --target onnxruntime \
      --out /tmp/repository-check/model_repository \
 && rm -rf /tmp/repository-check

EXPOSE 8000 8001 8002
# /repository is where docker-compose.yml mounts the generated repository: build_repository
# replaces its output folder by renaming a sibling, so the output must sit inside the volume,
# not be the mount point itself.
CMD ["tritonserver", "--model-repository=/repository/model_repository", "--model-control-mode=none"]
