"""Own labelled data (`refine prepare custom`): the converter, mask layouts, class files and --map, and one
module per annotation format (COCO, LabelMe, Label Studio, YOLO-seg, Cityscapes polygons) on shared guards
(export paths, JSON shapes, coordinates, images)."""
