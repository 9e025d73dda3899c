"""edgekws.nn: the numpy backpropagation engine (layers, losses, optimizers, model container).

Activations are NHWC float32 batches; weights use the export layouts (Dense [out, in], Conv2D
[out, kh, kw, in], DepthwiseConv2D [kh, kw, C]). See each layer's docstring for shapes.
"""

from edgekws.nn.activations import ReLU, ReLU6
from edgekws.nn.conv import Conv2D
from edgekws.nn.dense import Dense
from edgekws.nn.depthwise import DepthwiseConv2D
from edgekws.nn.layer import Layer, layer_from_config, register
from edgekws.nn.losses import SoftmaxCrossEntropy, TripletLoss, log_softmax
from edgekws.nn.model import Sequential
from edgekws.nn.norm import BatchNorm, adapt_batchnorm, fold_batchnorm
from edgekws.nn.optim import SGD, Adam, AdamW, Optimizer, clip_grad_norm
from edgekws.nn.parallel import get_num_threads, set_num_threads
from edgekws.nn.pooling import AvgPool2D, GlobalAvgPool, MaxPool2D
from edgekws.nn.recurrent import GRU
from edgekws.nn.schedules import cosine, step_decay, warmup
from edgekws.nn.shape import Dropout, Flatten

__all__ = [
    "Layer", "register", "layer_from_config", "Dense", "Conv2D", "DepthwiseConv2D", "BatchNorm",
    "fold_batchnorm", "adapt_batchnorm", "ReLU", "ReLU6", "AvgPool2D", "MaxPool2D", "GlobalAvgPool", "Flatten", "Dropout",
    "GRU", "SoftmaxCrossEntropy", "TripletLoss", "log_softmax", "SGD", "Adam", "AdamW", "Optimizer",
    "clip_grad_norm", "warmup", "cosine", "step_decay", "Sequential", "get_num_threads", "set_num_threads",
]
