"""``qcat demo``: generate the demo survey catalog and its images, and ingest them."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote

from partition.images import publisher_did
from partition.ingest import IngestOptions, ingest_table
from qcat.config import SETTINGS
from qcat.demo.generator import schema_path, write_demo_files
from qcat.demo_images import DemoImages, ingest_demo_images, render_images
from qcat.metadata.store import MetadataStore
from qcat.progress import progress
from qcat.schema import load_felis
from qcat.tap_schema import refresh_tap_schema


def run_demo(
    data_dir: Path,
    *,
    objects: int,
    seed: int,
    threshold: int,
    images: bool = True,
    show_progress: bool = True,
) -> DemoImages | None:
    """Generate ``objects`` Object rows (and their Sources) and ingest both tables.

    With ``images``, also render the demo images of the catalog and ingest
    them into ``ivoa.ObsCore`` (:mod:`qcat.demo_images`); they are returned.
    The generated input files are kept in ``<data_dir>/demo-input`` so a
    second run with the same arguments finds them already ingested.
    """
    inputs = data_dir / "demo-input" / f"objects-{objects}-seed-{seed}"
    marker = inputs / "COMPLETE"
    if not marker.exists():
        with progress("generating demo catalog", objects, enabled=show_progress) as bar:
            files = write_demo_files(inputs, objects, seed=seed, progress=bar.advance)
        marker.write_text(f"{files.n_objects} objects, {files.n_sources} sources\n")
    tables = load_felis(schema_path())
    options = IngestOptions(threshold=threshold, show_progress=show_progress)
    ingest_table(data_dir, tables["demo.Object"], sorted(inputs.glob("Object-*.parquet")), options)
    # Sources are looked up by their own id too (a DataLink, a light curve's point).
    sources = sorted(inputs.glob("Source-*.parquet"))
    ingest_table(data_dir, tables["demo.Source"], sources, replace(options, child_key_index=True))
    out = sys.stdout
    rendered = None
    if images:
        rendered = render_images(inputs, objects=objects, seed=seed, show_progress=show_progress)
        added = ingest_demo_images(data_dir, rendered, show_progress=show_progress)
        done = "ingested" if added else "already ingested, skipped"
        out.write(
            f"demo images: {len(rendered.obs_ids)} files of collection {rendered.collection} "
            f"{done} ({rendered.directory})\n"
        )
    refresh_tap_schema(data_dir)
    store = MetadataStore.for_data_dir(data_dir)
    try:
        out.write(f"qcat demo data in {data_dir.resolve()}\n")
        for t in store.tables():
            v = store.current_version(t.name)
            if v is None:
                continue
            orders = sorted({p.order for p in store.partitions(t.name)})
            # plain tables (TAP_SCHEMA) are one file, without HEALPix orders
            span = f" (orders {orders[0]}-{orders[-1]})" if orders else ""
            out.write(
                f"  {t.name:<19} {t.kind:<8} {v.num_rows:>12,} rows  {v.num_partitions:>5} "
                f"partitions{span}  {v.path}\n"
            )
        out.write("Try: uv run qcat admin verify --data " + str(data_dir) + "\n")
    finally:
        store.close()
    return rendered


DEMO_QUERY = (
    "SELECT TOP 10 objectId, coord_ra, coord_dec, r_psfMag FROM demo.Object "
    "WHERE CONTAINS(POINT(coord_ra, coord_dec), CIRCLE(266.4, -28.9, 1)) = 1 "
    "ORDER BY r_psfMag"
)


def demo_instructions(tap_url: str, images: DemoImages | None = None) -> str:
    """What ``qcat demo`` prints once the service listens: the URLs, pyvo and TOPCAT steps.

    With ``images``, also the image services (SIA, DataLink, SODA, files) and
    a pyvo example that finds the images holding a catalog star and cuts it out.
    """
    text = f"""
qcat TAP service at {tap_url} (Ctrl-C stops it)

From Python (pip install pyvo), paste:

    import pyvo
    tap = pyvo.dal.TAPService("{tap_url}")
    result = tap.run_sync("{DEMO_QUERY}")
    print(result.to_table())

From TOPCAT: menu VO > Table Access Protocol (TAP) Query; paste
    {tap_url}
into "TAP URL" at the bottom, press "Use Service", type an ADQL query
(e.g. SELECT TOP 100 * FROM demo.Source) and press "Run Query".

From a shell:
    curl '{tap_url}/sync' --data-urlencode 'QUERY=SELECT COUNT(*) FROM demo.Object' \\
         -d RESPONSEFORMAT=csv
"""
    if images is not None and images.obs_ids:
        text += image_instructions(tap_url.removesuffix("/tap"), images)
    return text


def image_instructions(base_url: str, images: DemoImages) -> str:
    """The image part of :func:`demo_instructions` (``base_url``: the service's root)."""
    field = next((f for f in images.fields if f.anchor_id is not None), images.fields[0])
    ra, dec = (round(v, 6) for v in field.target)
    star = f"demo.Object {field.anchor_id}" if field.anchor_id is not None else "the centre"
    obs_id = next(o for o in images.obs_ids if images.field_of(o) == field.name)
    did = publisher_did(str(SETTINGS["image_authority"].default), images.collection, obs_id)
    return f"""
Images: {len(images.obs_ids)} FITS files of collection '{images.collection}' in ivoa.ObsCore
    SIA 2.0    {base_url}/sia/query?POS=CIRCLE+{ra}+{dec}+0.01
    DataLink   {base_url}/datalink/links?ID={quote(did, safe="")}
    SODA       {base_url}/soda/sync?ID={quote(did, safe="")}&CIRCLE={ra}+{dec}+0.01
    file       {base_url}/images/{images.collection}/{obs_id}.fits

The images holding {star} (field {field.name}) and a cutout around it, paste:

    import pyvo
    sia = pyvo.dal.SIA2Service("{base_url}/sia")
    found = sia.search(pos=({ra}, {dec}, 0.001), collection="{images.collection}")
    print(found.to_table()["obs_id", "band_name", "t_min"])
    links = next(found.iter_datalinks())  # DataLink: the file and a SODA cutout service
    cutout = links.get_first_proc().processed(circle=({ra}, {dec}, 0.01))
    open("cutout.fits", "wb").write(cutout.read())
"""
