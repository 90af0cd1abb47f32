"""The allowed values of the config keys that several modules check, with nothing imported: the config
check (which must not wait for torch) and the endpoint (which has no omegaconf) both read them."""

ARCHES = ("resnet18", "resnet34", "resnet50", "resnet101")
FREEZE_POLICIES = ("head", "layer4", "all")
BAD_IMAGE_POLICIES = ("error", "skip")
# data.decode: where training images are decoded and augmented (auto: on the GPU when training on one).
DECODE_CHOICES = ("cpu", "gpu", "auto")
