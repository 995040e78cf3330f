"""prefect.yaml build/push steps for the GPU image, gated on $RUINSTRUCT_IMAGE.

`prefect deploy` runs build and push steps for every deployment that names them, on whatever
machine deploys. Prefect's own Docker steps need prefect-docker and a Docker engine; this machine,
and most laptops that only register deployments, have neither. So:

- RUINSTRUCT_IMAGE set (e.g. registry.example.com/ruinstruct-gpu:2026.12): build
  docker/gpu.Dockerfile with prefect_docker's build_docker_image and push it with
  push_docker_image (RUINSTRUCT_PUSH=0 builds without pushing, for a Docker worker on the same
  host). prefect_docker caches step outputs per process, so `deploy --all` builds once for the
  four paper deployments.
- RUINSTRUCT_IMAGE set and RUINSTRUCT_BUILD=0: an image built and pushed by hand (or by CI): the
  step names it, builds and pushes nothing, and needs neither prefect-docker nor Docker.
- unset: nothing is built or pushed; the step says so and returns the default image name, so
  `{{ build-image.image }}` still fills the paper deployments' job_variables.image (an image
  someone built and pushed before).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

IMAGE_ENV = "RUINSTRUCT_IMAGE"
PUSH_ENV = "RUINSTRUCT_PUSH"
BUILD_ENV = "RUINSTRUCT_BUILD"
DEFAULT_IMAGE = "ruinstruct-gpu:latest"


def split_image(image: str) -> tuple[str, str]:
    """'registry:5000/team/name:tag' -> ('registry:5000/team/name', 'tag'); no tag -> 'latest'.
    A colon before the last slash belongs to the registry's port, not to a tag."""
    image = image.strip()
    if "@" in image:
        raise ValueError(f"{IMAGE_ENV}={image!r}: give a tag (name:tag), not a digest")
    name, sep, tag = image.rpartition(":")
    if not sep or "/" in tag:
        return image, "latest"
    if not name or not tag:
        raise ValueError(f"{IMAGE_ENV}={image!r} is not an image name (name:tag)")
    return name, tag


def _off(var: str) -> bool:
    return os.environ.get(var, "1").strip().lower() in ("0", "false", "no", "off")


def builds() -> bool:
    """Whether the build step builds: RUINSTRUCT_IMAGE names an image and RUINSTRUCT_BUILD is not 0."""
    return bool(os.environ.get(IMAGE_ENV, "").strip()) and not _off(BUILD_ENV)


def _docker_step(name: str):
    try:
        from prefect_docker.deployments import steps
    except ImportError:
        raise RuntimeError(
            f"{IMAGE_ENV} is set, so the GPU image is to be built and pushed, which needs "
            "prefect-docker: `pip install prefect-docker` (and a Docker engine), or unset "
            f"{IMAGE_ENV}, or set {BUILD_ENV}=0 as well, to deploy with an image built elsewhere"
        ) from None
    return getattr(steps, name)


def _result(image_name: str, tag: str, built: bool, **extra: Any) -> dict[str, Any]:
    return {"image_name": image_name, "tag": tag, "image": f"{image_name}:{tag}", "built": built,
            "additional_tags": [], **extra}


def build_image(
    dockerfile: str = "docker/gpu.Dockerfile",
    default_image: str = DEFAULT_IMAGE,
    image: str | None = None,
    path: str = ".",
    **build_kwargs: Any,
) -> dict[str, Any]:
    """Build the image named by `image` or $RUINSTRUCT_IMAGE from `dockerfile` (context `path`);
    with neither, skip and return `default_image`; with RUINSTRUCT_BUILD=0, skip and return the
    named image. Outputs: image_name, tag, image, built."""
    wanted = (image or os.environ.get(IMAGE_ENV, "")).strip()
    if not wanted:
        name, tag = split_image(default_image)
        print(f"build-image: skipped ({IMAGE_ENV} is not set); the deployments will run {name}:{tag}")
        return _result(name, tag, built=False, image_id=None)
    name, tag = split_image(wanted)
    if _off(BUILD_ENV):
        print(f"build-image: skipped ({BUILD_ENV}=0); the deployments will run {name}:{tag}, "
              "which must be in a registry the workers pull from")
        return _result(name, tag, built=False, image_id=None)
    context = Path(path).resolve()
    if not (context / dockerfile).is_file():
        raise FileNotFoundError(f"build-image: no Dockerfile at {context / dockerfile}")
    out = _docker_step("build_docker_image")(
        image_name=name, tag=tag, dockerfile=dockerfile, path=str(context), **build_kwargs
    )
    return {**out, "built": True}


def push_image(
    image_name: str,
    tag: str | None = None,
    built: bool | str = True,
    credentials: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Push what build_image built; nothing when it built nothing or RUINSTRUCT_PUSH=0."""
    tag = tag or "latest"
    # a template that did not resolve to the bool arrives as text
    if str(built).strip().lower() in ("false", "0", "", "none"):
        print(f"push-image: skipped (nothing was built); the deployments will run {image_name}:{tag}")
        return _result(image_name, tag, built=False)
    if _off(PUSH_ENV):
        print(f"push-image: skipped ({PUSH_ENV}=0); {image_name}:{tag} stays on this Docker engine")
        return _result(image_name, tag, built=True)
    out = _docker_step("push_docker_image")(image_name=image_name, tag=tag, credentials=credentials)
    return {**out, "built": True}
