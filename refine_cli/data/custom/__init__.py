"""Own labelled data (`refine prepare custom`): layouts, class lists, COCO JSON."""
