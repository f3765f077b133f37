"""Render the demo images: plan the fields and visits, draw the catalog, write FITS."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TypeAlias

import numpy as np
import pyarrow as pa
from astropy.wcs import WCS

from qcat.demo.images.catalog import ImageCatalog, SkyCircle, read_catalog
from qcat.demo.images.fields import (
    DEFAULT_FIELDS,
    DemoField,
    FieldDesign,
    catalog_regions,
    place_field,
)
from qcat.demo.images.files import observation_header, visit_hdus, write_hdus
from qcat.demo.images.photometry import READ_NOISE, SKY_COUNTS, counts, zero_points
from qcat.demo.images.pixels import Sources, render_planes, source_sigma
from qcat.demo.images.visits import VisitPlan, plan_visits
from qcat.demo.images.wcs import wcs_header
from qcat.demo.photometry import BANDS

#: The catalog, as rows of demo.Object (Arrow) or that table's Parquet files.
Objects: TypeAlias = ImageCatalog | pa.Table | pa.RecordBatch | Sequence[Path]
DEFAULT_SEED = 1
DEFAULT_SIZE = 512
DEFAULT_VISITS_PER_BAND = 2
#: Sources whose total counts are below this share of one pixel's sky noise are
#: invisible and skipped.
_FAINTEST_SHARE = 0.3


def load_catalog(objects: Objects, fields: Sequence[FieldDesign], size: int) -> ImageCatalog:
    """The objects of ``objects`` that any visit of ``fields`` can show."""
    regions = catalog_regions(tuple(fields), size)
    if isinstance(objects, ImageCatalog):
        return objects.within(regions)
    if isinstance(objects, pa.Table | pa.RecordBatch):
        return ImageCatalog.from_arrow(objects).within(regions)
    return read_catalog([Path(p) for p in objects], regions)


def plan_demo_images(
    catalog: ImageCatalog,
    *,
    fields: Sequence[FieldDesign] = DEFAULT_FIELDS,
    size: int = DEFAULT_SIZE,
    seed: int = DEFAULT_SEED,
    bands: Sequence[str] = BANDS,
    visits_per_band: int = DEFAULT_VISITS_PER_BAND,
) -> list[VisitPlan]:
    """Every visit :func:`render_demo_images` writes, fields placed on ``catalog``."""
    if size < 16:
        raise ValueError(f"size must be at least 16 pixels, got {size}")
    if visits_per_band < 1:
        raise ValueError(f"visits_per_band must be >= 1, got {visits_per_band}")
    unknown = sorted(set(bands) - set(BANDS))
    if unknown:
        raise ValueError(f"unknown bands {unknown}; choose from {list(BANDS)}")
    names = [f.name for f in fields]
    if len(set(names)) != len(names):
        raise ValueError(f"field names must be unique: {names}")
    plans: list[VisitPlan] = []
    for design in fields:
        placed = place_field(design, catalog, size)
        plans.extend(plan_visits(placed, tuple(bands), visits_per_band, size=size, seed=seed))
    return plans


def demo_fields(plans: Sequence[VisitPlan]) -> list[DemoField]:
    """The placed fields of ``plans``, in order, each once."""
    seen: dict[str, DemoField] = {}
    for plan in plans:
        seen.setdefault(plan.field.name, plan.field)
    return list(seen.values())


def _sources(plan: VisitPlan, catalog: ImageCatalog, wcs: WCS, zero_point: float) -> Sources:
    """The catalog objects landing on (or spilling onto) ``plan``'s image."""
    design = plan.field.design
    # The field's circumscribed circle plus room for the widest stamps.
    margin = 0.1 * design.radius_deg(plan.size)
    near = catalog.take(
        SkyCircle(plan.ra, plan.dec, design.radius_deg(plan.size) + margin).contains(
            catalog.vectors
        )
    )
    mags = near.mags[:, plan.band_index]
    total = counts(mags, zero_point)
    sky_sigma = math.sqrt(SKY_COUNTS[plan.band_index] + READ_NOISE**2)
    visible = np.isfinite(total) & (total >= _FAINTEST_SHARE * sky_sigma)
    near = near.take(visible)
    total = total[visible]
    if len(near) == 0:
        empty = np.empty(0)
        return Sources(empty, empty, empty, empty)
    x, y = wcs.all_world2pix(near.ra, near.dec, 0, quiet=True)
    sigma = source_sigma(plan.fwhm_px, near.extended, near.object_id, design.pixel_scale_arcsec)
    reach = 6.0 * sigma + 2.0
    on_image = (x > -reach) & (x < plan.size + reach) & (y > -reach) & (y < plan.size + reach)
    return Sources(x[on_image], y[on_image], total[on_image], sigma[on_image])


def render_visit(plan: VisitPlan, catalog: ImageCatalog, out_dir: Path) -> Path:
    """Draw ``catalog`` as ``plan`` sees it and write ``out_dir/<obs_id>.fits``."""
    design = plan.field.design
    wcs_cards = wcs_header(
        plan.ra,
        plan.dec,
        rotation_deg=plan.rotation_deg,
        scale_arcsec=design.pixel_scale_arcsec,
        size=plan.size,
        sip_order=design.sip_order,
    )
    zero_point = float(zero_points()[plan.band_index])
    sky = float(SKY_COUNTS[plan.band_index])
    sources = _sources(plan, catalog, WCS(wcs_cards), zero_point)
    planes = render_planes(plan.size, sky, sources, np.random.default_rng(plan.noise_seed()))
    path = out_dir / plan.file_name
    write_hdus(visit_hdus(plan, planes, wcs_cards, observation_header(plan, zero_point, sky)), path)
    return path


def render_demo_images(
    out_dir: Path,
    *,
    objects: Objects,
    fields: Sequence[FieldDesign] = DEFAULT_FIELDS,
    size: int = DEFAULT_SIZE,
    seed: int = DEFAULT_SEED,
    bands: Sequence[str] = BANDS,
    visits_per_band: int = DEFAULT_VISITS_PER_BAND,
) -> list[Path]:
    """Render demo images of ``objects`` into ``out_dir``; return the files written.

    ``objects`` is the demo catalog: demo.Object rows (Arrow), the Parquet
    files ``qcat demo`` generates, or an :class:`ImageCatalog`. Each field of
    ``fields`` gets ``visits_per_band`` ``size`` x ``size`` visits per band,
    named ``<field>-<band>-<NN>.fits``. The same arguments write the same bytes.
    """
    catalog = load_catalog(objects, fields, size)
    plans = plan_demo_images(
        catalog, fields=fields, size=size, seed=seed, bands=bands, visits_per_band=visits_per_band
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return [render_visit(plan, catalog, out) for plan in plans]
