# The build stage's image: the local Python image plus a folder of wheels made on the host, which
# pip uses instead of an index (pip inside a build may not reach PyPI: a proxy it does not trust,
# no network). tests/e2e/images.py fills wheelhouse/ with every dependency and build requirement
# of pyproject.toml.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
COPY wheelhouse/ /wheelhouse/
ENV PIP_NO_INDEX=1 \
    PIP_FIND_LINKS=/wheelhouse
