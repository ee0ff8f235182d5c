"""The class table of the VOC-family converters (VOC, SBD, COCO->VOC) and COCO's map onto it.

Kept in one place so VOC, SBD and COCO->VOC produce byte-identical metadata: a model trained on one
can be evaluated on another only if the class order and palette agree. The colours are the one VOC
palette, `class_tables.voc_palette`.
"""

from __future__ import annotations

from refine_cli.class_tables import VOC_CLASSES

__all__ = ["COCO_TO_VOC", "VOC_CLASSES"]

# COCO 2017 category id (the 91-slot ids, never the list position) -> VOC class index.
# Identical to torchvision references/segmentation/coco_utils.py CAT_LIST and gluon-cv COCOSegmentation.
COCO_TO_VOC: dict[int, int] = {
    5: 1,  # airplane -> aeroplane
    2: 2,  # bicycle
    16: 3,  # bird
    9: 4,  # boat
    44: 5,  # bottle
    6: 6,  # bus
    3: 7,  # car
    17: 8,  # cat
    62: 9,  # chair
    21: 10,  # cow
    67: 11,  # dining table -> diningtable
    18: 12,  # dog
    19: 13,  # horse
    4: 14,  # motorcycle -> motorbike
    1: 15,  # person
    64: 16,  # potted plant -> pottedplant
    20: 17,  # sheep
    63: 18,  # couch -> sofa
    7: 19,  # train
    72: 20,  # tv -> tvmonitor
}
