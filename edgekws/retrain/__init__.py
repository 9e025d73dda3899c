"""Last-layer retraining for a new language or new words: `edgekws retrain MODEL DATA --out MODEL2`.

The base model's int8 layers up to the pooled embedding stay frozen; a new dense head for the new
label set is initialized by weight imprinting and trained by SGD (softmax cross-entropy, or a
triplet-loss metric first), then re-quantized to int8 with the rule of quant/fixedpoint.py. The
numpy engine (headmath.py) and the C engine (firmware/src/head.c via ctypes, the device code)
give the same bits. The result is a normal model bundle (plus head.bin, the device's head blob).

    from edgekws.retrain import retrain, Backbone, fit_head
    retrain("models/ja", "data/my_en", "models/en", shots=5, engine="c")

Modules: core.py (bundle-level API), headmath.py (numpy twin of head.c), chead.py (ctypes),
triplet.py (--loss triplet), golden.py (C test vectors), device.py (data of the Cortex-M example
firmware/examples/cortex-m-retrain), cli.py (the command).
"""

from edgekws.retrain.core import (DEFAULT_EPOCHS, Backbone, HeadResult, Int8FloatHeadNetwork, dataset_examples,
                                  fit_head, int8_logits, pick_shots, retrain, write_retrained)
from edgekws.retrain.headmath import HeadConfig, HeadTrainer, QHead, blob_size, store_size, train_size, workspace_size
from edgekws.retrain.cli import register

__all__ = ["retrain", "Backbone", "fit_head", "HeadResult", "write_retrained", "dataset_examples", "pick_shots",
           "int8_logits", "HeadConfig", "HeadTrainer", "QHead", "workspace_size", "store_size", "train_size",
           "blob_size", "register",
           "DEFAULT_EPOCHS", "Int8FloatHeadNetwork"]


def _register_engine() -> None:
    from edgekws.evaluate import register_engine

    register_engine("int8-f32head", Int8FloatHeadNetwork)


_register_engine()
