"""Models: what a model is, and how a name becomes a model that can run.

A model is an ONNX file plus its card (``cards``). ``resolve`` is the one place where a model name, alias,
``auto``, card path or ONNX path becomes a resolved model: the card and its verified ONNX file, found,
downloaded and converted (``weights``), or imported from KappaZeta's Keras files (``keras_weights`` reads them,
``onnx_graphs`` builds the graph). ``networks`` defines the KappaMask networks in PyTorch for training, and
``export`` writes them through the same graph builder.

May import: foundation, io, models.
"""
