"""One converter per public dataset (VOC, SBD, COCO, Person-Part, Context, NYUDv2, ADE20K, Cityscapes).

Each module registers its converter with `data.convert.registry` and knows its dataset's archive
layout, class table and splits (docs/dataset-facts.md).
"""
