"""The pure cutout: pixel boxes, WCS of the cut, MEF, clipping, poles, small reads."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from qcat.geometry import Circle, Polygon
from services.sia.cutout import write_cutout
from services.sia.cutout_region import SkyRange, region_contains
from services.sia.soda_errors import NoOverlap
from tests.soda_images import PIXEL_DEG, SkyImage, pixels, wcs_header, write_image

N = 300

CASES = {
    "tan": dict(ra=150.0, dec=2.0),
    "tan-sip": dict(ra=30.0, dec=-40.0, sip=True, rotation_deg=17.0),
    "rotated": dict(ra=200.0, dec=60.0, rotation_deg=123.0),
    "ra0": dict(ra=0.005, dec=-5.0, rotation_deg=8.0),
    "pole": dict(ra=45.0, dec=89.99, sip=True, rotation_deg=40.0),
}


def _image(tmp_path: Path, name: str, star: tuple[float, float] = (100.3, 180.6), **kw) -> SkyImage:
    header = wcs_header(N, N, **CASES[name], **kw) if name in CASES else wcs_header(N, N, **kw)
    return write_image(tmp_path / f"{name}.fits", header, star)


def _cut(path: Path, region) -> fits.HDUList:
    buffer = io.BytesIO()
    write_cutout(path, region, buffer)
    buffer.seek(0)
    return fits.open(buffer)


def _check_wcs(
    original: SkyImage, hdu: fits.ImageHDU | fits.PrimaryHDU, ra: float, dec: float
) -> None:
    """(ra, dec) lands on the cutout pixel holding the original pixel's value, to < 0.01 px."""
    full_wcs = WCS(fits.getheader(original.path, 0 if hdu.name == "PRIMARY" else hdu.name))
    ox, oy = full_wcs.all_world2pix([[ra, dec]], 0)[0]
    cx, cy = WCS(hdu.header).all_world2pix([[ra, dec]], 0)[0]
    ltv1, ltv2 = hdu.header["LTV1"], hdu.header["LTV2"]
    assert abs((cx - ltv1) - ox) < 0.01 and abs((cy - ltv2) - oy) < 0.01
    # The pixel there holds the value of the original pixel (all values differ).
    original_data = fits.getdata(original.path, 0 if hdu.name == "PRIMARY" else hdu.name)
    assert hdu.data[round(cy), round(cx)] == original_data[round(oy), round(ox)]


@pytest.mark.parametrize("name", list(CASES))
def test_star_and_wcs_survive_the_cut(tmp_path: Path, name: str) -> None:
    image = _image(tmp_path, name)
    radius = 30 * PIXEL_DEG
    with _cut(image.path, Circle(image.star_ra, image.star_dec, radius)) as cut:
        hdu = cut[0]
        ny, nx = hdu.data.shape
        assert 55 <= nx <= 70 and 55 <= ny <= 70  # about 2 x 30 pixels, whatever the rotation
        # The star: brightest pixel of the cutout, where the cutout's WCS puts it.
        peak_y, peak_x = np.unravel_index(np.argmax(hdu.data), hdu.data.shape)
        sx, sy = WCS(hdu.header).all_world2pix([[image.star_ra, image.star_dec]], 0)[0]
        assert abs(peak_x - sx) <= 1.0 and abs(peak_y - sy) <= 1.0
        # Several positions across the cutout map back to their original pixels.
        w = WCS(hdu.header)
        for px, py in ((3.2, 4.7), (nx / 2, ny / 3), (nx - 5.4, ny - 6.1)):
            ra, dec = w.all_pix2world([[px, py]], 0)[0]
            _check_wcs(image, hdu, ra, dec)
        # Headers are kept, the grid can be recovered.
        assert hdu.header["EXPTIME"] == 30.0 and hdu.header["FILTER"] == "r"
        original = fits.getdata(image.path)
        x0, y0 = -int(hdu.header["LTV1"]), -int(hdu.header["LTV2"])
        np.testing.assert_array_equal(hdu.data, original[y0 : y0 + ny, x0 : x0 + nx])


def test_sip_keywords_are_kept(tmp_path: Path) -> None:
    image = _image(tmp_path, "tan-sip")
    with _cut(image.path, Circle(image.star_ra, image.star_dec, 10 * PIXEL_DEG)) as cut:
        header = cut[0].header
        assert header["CTYPE1"] == "RA---TAN-SIP" and header["A_2_0"] == 3e-5
        original = fits.getheader(image.path)
        assert header["CRPIX1"] == original["CRPIX1"] + header["LTV1"]
        assert header["CRPIX2"] == original["CRPIX2"] + header["LTV2"]


def test_cut_is_clipped_at_the_edge(tmp_path: Path) -> None:
    image = _image(tmp_path, "tan", star=(3.0, 296.0))
    with _cut(image.path, Circle(image.star_ra, image.star_dec, 20 * PIXEL_DEG)) as cut:
        hdu = cut[0]
        assert hdu.header["LTV1"] == 0  # starts at the first column
        ny, nx = hdu.data.shape
        assert 22 <= nx <= 25 and 22 <= ny <= 25
        assert -hdu.header["LTV2"] + ny == N  # ends at the last row


def test_region_holding_the_whole_image_gives_the_whole_image(tmp_path: Path) -> None:
    image = _image(tmp_path, "rotated")
    with _cut(image.path, Circle(image.star_ra, image.star_dec, 1.0)) as cut:
        assert cut[0].data.shape == (N, N)
        np.testing.assert_array_equal(cut[0].data, fits.getdata(image.path))


def test_no_overlap(tmp_path: Path) -> None:
    image = _image(tmp_path, "tan")
    with pytest.raises(NoOverlap, match="does not overlap"):
        write_cutout(image.path, Circle(image.star_ra + 1.0, image.star_dec, 0.01), io.BytesIO())
    # Just beyond the corner: no pixel touched.
    with pytest.raises(NoOverlap):
        far = Circle(image.star_ra, image.star_dec - 0.2, 0.01)
        write_cutout(image.path, far, io.BytesIO())


def _assert_tight(cut: fits.HDUList, image: SkyImage, region) -> None:
    """The cut's box holds every pixel whose centre is in ``region``, and at most 1 more."""
    hdu = cut[0]
    ny, nx = hdu.data.shape
    x0, y0 = -int(hdu.header["LTV1"]), -int(hdu.header["LTV2"])
    w = WCS(fits.getheader(image.path))
    y, x = np.mgrid[0:N, 0:N]
    ra, dec = w.all_pix2world(x.ravel(), y.ravel(), 0)
    inside = region_contains(region, ra, dec)
    xs, ys = x.ravel()[inside], y.ravel()[inside]
    assert xs.size > 0
    assert x0 <= xs.min() and xs.max() <= x0 + nx - 1
    assert y0 <= ys.min() and ys.max() <= y0 + ny - 1
    assert x0 >= xs.min() - 1 and x0 + nx - 1 <= xs.max() + 1
    assert y0 >= ys.min() - 1 and y0 + ny - 1 <= ys.max() + 1


def test_region_containing_the_pole(tmp_path: Path) -> None:
    image = _image(tmp_path, "pole", star=(150.0, 150.0))
    # A circle around the pole, partly off the image.
    circle = Circle(0.0, 90.0, 0.012)
    with _cut(image.path, circle) as cut:
        _assert_tight(cut, image, circle)
    # Every ra near the pole: the same place.
    cap = SkyRange(0.0, 360.0, 89.988, 90.0, full_ra=True)
    with _cut(image.path, cap) as cut:
        _assert_tight(cut, image, cap)
    # A wedge of ra reaching the pole.
    wedge = SkyRange(300.0, 20.0, 89.99, 90.0)
    with _cut(image.path, wedge) as cut:
        _assert_tight(cut, image, wedge)


def test_range_and_polygon_across_ra_zero(tmp_path: Path) -> None:
    image = _image(tmp_path, "ra0", star=(150.0, 150.0))
    box = SkyRange(359.998, 0.008, -5.005, -4.998)
    with _cut(image.path, box) as cut:
        _assert_tight(cut, image, box)
    poly = Polygon(((359.999, -5.001), (0.002, -5.001), (0.002, -4.999)))
    with _cut(image.path, poly) as cut:
        _assert_tight(cut, image, poly)


def test_multi_extension_file_is_cut_consistently(tmp_path: Path) -> None:
    header = wcs_header(N, N, 80.0, -30.0, rotation_deg=30.0)
    image = write_image(tmp_path / "mef.fits", header, (200.0, 100.0), mef=True)
    with _cut(image.path, Circle(image.star_ra, image.star_dec, 15 * PIXEL_DEG)) as cut:
        assert [h.name for h in cut] == ["PRIMARY", "SCI", "VAR", "MASK"]
        assert cut[0].data is None and cut[0].header["ORIGIN"] == "qcat tests"
        sci, var, mask = cut["SCI"], cut["VAR"], cut["MASK"]
        assert sci.data.shape == var.data.shape == mask.data.shape
        np.testing.assert_array_equal(var.data, sci.data * 2.0)
        np.testing.assert_array_equal(mask.data, (sci.data % 7).astype(np.int16))
        assert mask.header["LTV1"] == sci.header["LTV1"]
        peak_y, peak_x = np.unravel_index(np.argmax(sci.data), sci.data.shape)
        sx, sy = WCS(sci.header).all_world2pix([[image.star_ra, image.star_dec]], 0)[0]
        assert abs(peak_x - sx) <= 1.0 and abs(peak_y - sy) <= 1.0


def test_scaled_integers_are_copied_raw(tmp_path: Path) -> None:
    header = wcs_header(N, N, 10.0, 10.0)
    data = (pixels(N, N, None) % 60000).astype(np.uint16)  # stored as int16 + BZERO 32768
    path = tmp_path / "u16.fits"
    fits.PrimaryHDU(data, header).writeto(path)
    assert fits.getheader(path)["BZERO"] == 32768
    w = WCS(header)
    ra, dec = w.all_pix2world([[150.0, 150.0]], 0)[0]
    with _cut(path, Circle(ra, dec, 10 * PIXEL_DEG)) as cut:
        hdu = cut[0]
        assert hdu.header["BITPIX"] == 16 and hdu.header["BZERO"] == 32768
        x0, y0 = -int(hdu.header["LTV1"]), -int(hdu.header["LTV2"])
        ny, nx = hdu.data.shape
        np.testing.assert_array_equal(hdu.data, data[y0 : y0 + ny, x0 : x0 + nx])


class _CountingFile(io.FileIO):
    """A file that counts the bytes read from it."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, "rb")
        self.bytes_read = 0

    def read(self, size: int = -1) -> bytes:
        data = super().read(size)
        self.bytes_read += len(data)
        return data

    def readinto(self, buffer) -> int:  # type: ignore[override]
        n = super().readinto(buffer) or 0
        self.bytes_read += n
        return n


def test_only_the_needed_rows_are_read(tmp_path: Path) -> None:
    n = 2000
    header = wcs_header(n, n, 10.0, 10.0)
    path = tmp_path / "big.fits"
    fits.PrimaryHDU(np.zeros((n, n), dtype=np.float32), header).writeto(path)
    size = path.stat().st_size
    ra, dec = WCS(header).all_pix2world([[1000.0, 1000.0]], 0)[0]
    with _CountingFile(path) as source:
        buffer = io.BytesIO()
        write_cutout(source, Circle(ra, dec, 20 * PIXEL_DEG), buffer)
        # 41 rows of 41 pixels out of 2000 x 2000: the header and well under 1% of the data.
        assert source.bytes_read < 0.01 * size, (source.bytes_read, size)
    buffer.seek(0)
    assert fits.getdata(buffer).shape == (41, 41)
