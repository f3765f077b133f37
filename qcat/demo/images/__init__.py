"""Demo images: FITS visits of the demo catalog's fields in ugrizy (TAN and TAN-SIP WCS)."""

from qcat.demo.images.catalog import ImageCatalog, SkyCircle, read_catalog
from qcat.demo.images.fields import DEFAULT_FIELDS, DemoField, FieldDesign, place_field
from qcat.demo.images.files import EXTENSIONS
from qcat.demo.images.pixels import MASK_PLANES
from qcat.demo.images.render import (
    DEFAULT_SEED,
    DEFAULT_SIZE,
    DEFAULT_VISITS_PER_BAND,
    Objects,
    demo_fields,
    load_catalog,
    plan_demo_images,
    render_demo_images,
    render_visit,
)
from qcat.demo.images.visits import VisitPlan

__all__ = [
    "DEFAULT_FIELDS",
    "DEFAULT_SEED",
    "DEFAULT_SIZE",
    "DEFAULT_VISITS_PER_BAND",
    "EXTENSIONS",
    "MASK_PLANES",
    "DemoField",
    "FieldDesign",
    "ImageCatalog",
    "Objects",
    "SkyCircle",
    "VisitPlan",
    "demo_fields",
    "load_catalog",
    "place_field",
    "plan_demo_images",
    "read_catalog",
    "render_demo_images",
    "render_visit",
]
