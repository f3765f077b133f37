"""The image step of ``qcat demo``: render the demo images of the catalog and ingest them.

The images are rendered once per catalog into
``<data>/demo-input/objects-N-seed-S/images`` (a marker file records that
they are complete, so a rerun reuses them) and ingested into ``ivoa.ObsCore``
as collection :data:`DEMO_COLLECTION`.

Every catalog (``--objects``, ``--seed``) has images of its own stars, so the
obs_ids carry the catalog: ``n<objects>-s<seed>-<field>-<band>-<NN>``. A data
directory holding the images of another catalog therefore gets the new ones
beside them, in the same collection, never a clash of identifiers.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from partition.images import ingest_images
from partition.images.ingest import published_obscore
from qcat.demo.images import demo_fields, load_catalog, plan_demo_images, render_visit
from qcat.demo.images.fields import DEFAULT_FIELDS
from qcat.demo.images.render import DEFAULT_SIZE
from qcat.progress import progress

#: obs_collection of the demo images.
DEMO_COLLECTION = "demo"
_MARKER = "COMPLETE.json"


@dataclass(frozen=True)
class DemoImageField:
    """Where one demo field is, and the catalog star every visit of it holds."""

    name: str
    ra: float
    dec: float
    #: The anchor star (demo.Object objectId and position); None when the
    #: field's region held no usable star (tiny catalogs).
    anchor_id: int | None
    anchor_ra: float | None
    anchor_dec: float | None

    @property
    def target(self) -> tuple[float, float]:
        """The anchor's position, else the field's centre."""
        if self.anchor_ra is not None and self.anchor_dec is not None:
            return self.anchor_ra, self.anchor_dec
        return self.ra, self.dec


@dataclass(frozen=True)
class DemoImages:
    """The rendered demo images of one catalog."""

    collection: str
    directory: Path
    #: What every obs_id starts with (:func:`obs_id_prefix`).
    prefix: str
    obs_ids: list[str]
    fields: list[DemoImageField]

    @property
    def files(self) -> list[Path]:
        return [self.directory / f"{o}.fits" for o in self.obs_ids]

    def field_of(self, obs_id: str) -> str:
        """The name of the field ``obs_id`` shows (``<prefix><field>-<band>-<NN>``)."""
        return obs_id.removeprefix(self.prefix).rsplit("-", 2)[0]


def obs_id_prefix(objects: int, seed: int) -> str:
    """What the obs_ids of the images of the catalog (``objects``, ``seed``) start with."""
    return f"n{objects}-s{seed}-"


def render_images(
    inputs: Path, *, objects: int, seed: int, size: int = DEFAULT_SIZE, show_progress: bool = True
) -> DemoImages:
    """The demo images of the catalog in ``inputs`` (Object Parquet files), rendered once.

    They go to ``inputs/images``; a marker written last lists them and the
    fields, so a later call (a rerun of ``qcat demo``) reads it and renders
    nothing. An interrupted rendering is redone from scratch.
    """
    directory = inputs / "images"
    marker = directory / _MARKER
    if marker.exists():
        return _read_marker(marker)
    catalog = load_catalog(sorted(inputs.glob("Object-*.parquet")), DEFAULT_FIELDS, size)
    plans = plan_demo_images(catalog, size=size, seed=seed)
    directory.mkdir(parents=True, exist_ok=True)
    prefix = obs_id_prefix(objects, seed)
    obs_ids = []
    with progress("rendering demo images", len(plans), enabled=show_progress) as bar:
        for plan in plans:
            written = render_visit(plan, catalog, directory)
            # Rendered files are named after the visit; the catalog goes in front.
            obs_id = prefix + plan.obs_id
            written.replace(directory / f"{obs_id}.fits")
            obs_ids.append(obs_id)
            bar.advance(1)
    fields = [
        DemoImageField(f.name, f.ra, f.dec, f.anchor_id, f.anchor_ra, f.anchor_dec)
        for f in demo_fields(plans)
    ]
    images = DemoImages(DEMO_COLLECTION, directory, prefix, obs_ids, fields)
    marker.write_text(
        json.dumps(
            {
                "collection": images.collection,
                "prefix": prefix,
                "obs_ids": obs_ids,
                "fields": [asdict(f) for f in fields],
            },
            indent=1,
        )
        + "\n"
    )
    return images


def _read_marker(marker: Path) -> DemoImages:
    doc = json.loads(marker.read_text())
    fields = [DemoImageField(**f) for f in doc["fields"]]
    return DemoImages(doc["collection"], marker.parent, doc["prefix"], list(doc["obs_ids"]), fields)


def published_obs_ids(data_dir: Path, collection: str) -> set[str]:
    """The obs_ids of ``collection`` in the published ``ivoa.ObsCore`` (empty without one)."""
    table = published_obscore(
        data_dir, ["obs_collection", "obs_id"], filters=[("obs_collection", "=", collection)]
    )
    if table is None:
        return set()
    return set(table.column("obs_id").to_pylist())


def ingest_demo_images(data_dir: Path, images: DemoImages, *, show_progress: bool = True) -> int:
    """Ingest ``images`` into ``ivoa.ObsCore`` unless all of them are there; rows added.

    The check reads two columns of ObsCore, so a rerun of ``qcat demo`` does
    not read every file again the way the ingest's own idempotence would.
    """
    if set(images.obs_ids) <= published_obs_ids(data_dir, images.collection):
        return 0
    result = ingest_images(
        data_dir, images.collection, images.files, strict=True, show_progress=show_progress
    )
    return result.rows_added
