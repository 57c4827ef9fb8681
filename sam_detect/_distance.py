"""The Euclidean distance to the nearest zero pixel, the same on every machine.

OpenCV's exact transform (``cv2.distanceTransform(..., cv2.DIST_L2, cv2.DIST_MASK_PRECISE)``)
returns float32 distances a few units in the last place off the true ones, and how far off
depends on the threads OpenCV runs it on: 2, 4 and 8 threads disagree on some images, and on
one thread (a one-core machine, or a process pinned to one core) OpenCV 5.0 returns other
values from call to call for the same input. The splits seed at the distance's maxima and
flood it, so those last places decided ties: the same examples calibrated twice on one core
gave other reproduction scores. The true squared distances are integers (``dy² + dx²``), so
rounding the square of OpenCV's value to the nearest integer recovers them while OpenCV's
error stays well under half a unit there (:data:`EXACT_BELOW`); their square roots, rounded
to float32, are the exact transform's (``scipy.ndimage.distance_transform_edt``'s values),
which is used outright where some pixel lies farther from every zero.
"""

from __future__ import annotations

import numpy as np

#: distances below which OpenCV's value is rounded back to the exact one: its relative error
#: was at most 6.4e-7 over 600 random images of 5-1,500 px a side, so the squared distance
#: is off by at most 2 x 362² x 6.4e-7 ≈ 0.17 here, safely under the 0.5 that rounding needs
EXACT_BELOW = 362.0


def distance_to_zero(binary: np.ndarray) -> np.ndarray:
    """``(H, W)`` float32: each pixel's Euclidean distance to the nearest zero pixel of the
    2-D ``binary`` (0 at the pixels measured from, any dtype), correctly rounded,
    so that every machine and thread count gives the same values. Where ``binary`` holds no
    zero, every pixel is given the image's diagonal (farther than any pixel lies)."""
    import cv2

    # 0 / 1 (any other dtype compared with 0: a cast to uint8 would wrap 256 to 0)
    src = np.ascontiguousarray(binary if binary.dtype == np.uint8 else binary != 0).view(np.uint8)
    if src.size == 0:
        return np.zeros(src.shape, np.float32)
    if src.all():
        return np.full(src.shape, np.float32(np.hypot(*src.shape)), np.float32)
    d = cv2.distanceTransform(src, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    if float(d.max()) >= EXACT_BELOW:
        from scipy import ndimage

        return ndimage.distance_transform_edt(src).astype(np.float32)
    # in float32, in place: the squares stay under 2**17, whole numbers float32 holds exactly
    # (the product's own rounding adds under 0.01), and float32's square root is correctly
    # rounded, as float64's rounded to float32 is (checked for every whole number under 2**17)
    np.multiply(d, d, out=d)
    np.rint(d, out=d)
    np.sqrt(d, out=d)
    return d
