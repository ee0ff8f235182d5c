"""Own labelled data (`refine prepare custom`): the converter, source layouts, class files, COCO JSON."""
