"""Image data for the SIA and SODA benchmarks (not run by the tests).

Run:

    uv run python -m bench.image_data small --out bench/out/images-small   # 10,000 files
    uv run python -m bench.image_data large --out bench/out/images-large   # one 4k x 4k MEF

``small`` writes ``--count`` tiny FITS files (16 x 16 pixels of noise) whose
WCS is scaled so each footprint is that of a 4k x 4k CCD at 0.2"/pixel
(13.7 arcmin across): pointings uniform over the sky, each observed about ten
times with small offsets, any rotation, mixed bands and times, so footprints
overlap as a survey's do. Only the headers matter for an SIA search.

``large`` writes one 4096 x 4096 multi-extension file (float32 image and
variance, int32 mask; TAN-SIP WCS at 0.2"/pixel) with Gaussian stars, and a
Parquet list of the stars (``ra``, ``dec``, ``mag``, ``x``, ``y``) so a cutout
benchmark can aim at them. Both use the demo renderer's header layout.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from astropy.io import fits
from astropy.wcs import WCS

from qcat.demo.cadence import SURVEY_NIGHTS, SURVEY_START_MJD
from qcat.demo.images import DemoField, FieldDesign, ImageCatalog, SkyCircle, VisitPlan
from qcat.demo.images.files import observation_header, visit_hdus, write_hdus
from qcat.demo.images.photometry import EXPTIME_S, SKY_COUNTS, zero_points
from qcat.demo.images.pixels import Planes
from qcat.demo.images.render import render_visit
from qcat.demo.images.wcs import wcs_header
from qcat.demo.photometry import BANDS
from qcat.demo.sky import lon_lat, offset_positions

CCD_PIXELS = 4096
CCD_SCALE_ARCSEC = 0.2
SMALL_PIXELS = 16
VISITS_PER_POINTING = 10
#: Offsets between the visits of one pointing (degrees, uniform in +-).
_DITHER_DEG = 0.05


def _plan(
    name: str,
    ra: float,
    dec: float,
    *,
    rotation: float,
    scale: float,
    size: int,
    band_index: int,
    mjd: float,
    fwhm_px: float,
    mef: bool,
    sip_order: int = 0,
) -> VisitPlan:
    """A one-visit plan with the demo renderer's header layout."""
    design = FieldDesign(name, SkyCircle(ra, dec, 0.0), rotation, scale, sip_order=sip_order)
    return VisitPlan(
        field=DemoField(design, ra, dec, None, None, None),
        band=BANDS[band_index],
        band_index=band_index,
        number=1,
        visit_id=0,
        ra=ra,
        dec=dec,
        rotation_deg=rotation,
        fwhm_px=fwhm_px,
        mjd_start=mjd,
        exptime=EXPTIME_S,
        mef=mef,
        size=size,
        seed=0,
    )


def write_small(out: Path, count: int, seed: int) -> list[Path]:
    """``count`` 16 x 16 FITS files, each with the footprint of a 4k x 4k CCD."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pointings = max(1, math.ceil(count / VISITS_PER_POINTING))
    # Uniform on the sphere: uniform RA and uniform sin(Dec).
    centres_ra = rng.uniform(0.0, 360.0, pointings)
    centres_dec = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, pointings)))
    scale = CCD_PIXELS * CCD_SCALE_ARCSEC / SMALL_PIXELS
    zps = zero_points()
    paths: list[Path] = []
    for k in range(count):
        p = k % pointings
        ra, dec = offset_positions(
            centres_ra[p : p + 1],
            centres_dec[p : p + 1],
            rng.uniform(-_DITHER_DEG, _DITHER_DEG, 1),
            rng.uniform(-_DITHER_DEG, _DITHER_DEG, 1),
        )
        band = int(rng.integers(0, len(BANDS)))
        mjd = SURVEY_START_MJD + float(rng.uniform(0.0, SURVEY_NIGHTS))
        plan = _plan(
            f"bench-{k:05d}",
            float(ra[0]),
            float(dec[0]),
            rotation=float(rng.uniform(0.0, 360.0)),
            scale=scale,
            size=SMALL_PIXELS,
            band_index=band,
            mjd=mjd,
            fwhm_px=float(rng.uniform(0.6, 1.0)) / scale,
            mef=False,
        )
        sky = float(SKY_COUNTS[band])
        shape = (SMALL_PIXELS, SMALL_PIXELS)
        image = rng.normal(sky, math.sqrt(sky), shape).astype(np.float32)
        planes = Planes(image, np.full(shape, sky, np.float32), np.zeros(shape, np.int32))
        wcs = wcs_header(
            plan.ra, plan.dec, rotation_deg=plan.rotation_deg, scale_arcsec=scale, size=plan.size
        )
        observation = observation_header(plan, float(zps[band]), sky)
        observation["OBJECT"] = (f"pointing-{p:05d}", "field name")
        path = out / plan.file_name
        write_hdus(visit_hdus(plan, planes, wcs, observation), path)
        paths.append(path)
    return paths


def _star_catalog(
    rng: np.random.Generator, ra: float, dec: float, radius_deg: float, n: int
) -> ImageCatalog:
    """``n`` stars uniform in a circle, magnitudes rising steeply to the faint end."""
    distance = radius_deg * np.sqrt(rng.random(n))
    angle = rng.uniform(0.0, 2.0 * np.pi, n)
    star_ra, star_dec = offset_positions(
        np.full(n, ra), np.full(n, dec), distance * np.sin(angle), distance * np.cos(angle)
    )
    r_mag = 24.5 - rng.exponential(1.8, n)
    colours = rng.normal(0.0, 0.3, (n, len(BANDS))) + np.array([1.6, 0.5, 0.0, -0.2, -0.3, -0.35])
    ids = np.arange(1, n + 1, dtype=np.int64)
    return ImageCatalog(ids, star_ra, star_dec, r_mag[:, None] + colours, np.zeros(n, dtype=bool))


def write_large(out: Path, size: int, stars: int, seed: int) -> Path:
    """One ``size`` x ``size`` multi-extension image with ``stars`` stars and their list."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    # A field away from the seam and the poles; any place works.
    vector = rng.normal(size=(1, 3))
    ra_all, dec_all = lon_lat(vector)
    ra, dec = float(ra_all[0]), float(np.clip(dec_all[0], -60.0, 60.0))
    plan = _plan(
        "bench-large",
        ra,
        dec,
        rotation=12.0,
        scale=CCD_SCALE_ARCSEC,
        size=size,
        band_index=BANDS.index("r"),
        mjd=SURVEY_START_MJD + 100.5,
        fwhm_px=3.5,
        mef=True,
        sip_order=3,
    )
    radius = plan.field.design.radius_deg(size)
    catalog = _star_catalog(rng, ra, dec, radius, stars)
    path = render_visit(plan, catalog, out)
    with fits.open(path, memmap=True) as hdus:
        x, y = WCS(hdus["IMAGE"].header).all_world2pix(catalog.ra, catalog.dec, 0)
    inside = (x >= 0) & (x < size) & (y >= 0) & (y < size)
    table = pa.table(
        {
            "ra": catalog.ra[inside],
            "dec": catalog.dec[inside],
            "mag": catalog.mags[inside, BANDS.index("r")],
            "x": x[inside],
            "y": y[inside],
        }
    )
    pq.write_table(table, out / f"{plan.obs_id}-stars.parquet")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = ap.add_subparsers(dest="command", required=True)
    small = commands.add_parser("small", help="many tiny files with CCD-sized footprints")
    small.add_argument("--out", type=Path, default=Path("bench/out/images-small"))
    small.add_argument("--count", type=int, default=10_000)
    small.add_argument("--seed", type=int, default=1)
    large = commands.add_parser("large", help="one big multi-extension image with stars")
    large.add_argument("--out", type=Path, default=Path("bench/out/images-large"))
    large.add_argument("--size", type=int, default=CCD_PIXELS)
    large.add_argument("--stars", type=int, default=20_000)
    large.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    t0 = time.perf_counter()
    if args.command == "small":
        paths = write_small(args.out, args.count, args.seed)
        print(f"wrote {len(paths)} files to {args.out} in {time.perf_counter() - t0:.1f} s")
    else:
        path = write_large(args.out, args.size, args.stars, args.seed)
        mib = path.stat().st_size / 2**20
        print(f"wrote {path} ({mib:.0f} MiB) in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
