"""The images hub Dockerfiles start FROM, against the images a host that cannot pull has (the local
test host, which makes its own: Node, HAProxy, busybox): a FROM of any other image fails its build,
so it is said before the build starts, with the images there are. The Dockerfile is read by the
check's own parser (components.plan.dockerfile); this module only compares."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

from components.plan.dockerfile import DockerfileError, image_ref, pulled_images


def missing_base_images(dockerfiles: Iterable[tuple[str, Path]], images: Sequence[str],
                        shown_from: Path) -> list[str]:
    """One line for each FROM, in each hub's Dockerfile (`dockerfiles`: hub name and path), of an
    image not among `images`, naming the hub, the Dockerfile's line (its path relative to
    `shown_from` where it lies below it) and the images there are. A Dockerfile that cannot be read
    or parsed is left to the checks that stop the stack."""
    have = {image_ref(image) for image in images}
    found = []
    for hub, path in dockerfiles:
        shown = os.path.relpath(path, shown_from) if path.is_relative_to(shown_from) else str(path)
        try:
            froms = pulled_images(path.read_text(), shown)
        except (OSError, UnicodeDecodeError, DockerfileError):
            continue
        for cmd, image in froms:
            if image_ref(image) not in have:
                found.append(f"{hub}: {shown}:{cmd.start_line}: `{cmd.original}`: the test host has no {image} "
                             f"and cannot pull it, so this build will fail; start FROM an image it has: "
                             f"{', '.join(images)}")
    return found
