"""File formats: image files <-> pixel arrays (Pillow, DDS, BCn). Pure edges: they pack and
unpack the pixels they are given and know nothing of texture semantics or models.
"""
