"""The allowed values of the config keys that several modules check, with nothing imported: the config
check (which must not wait for torch) and the endpoint (which has no omegaconf) both read them."""

ARCHES = ("resnet18", "resnet34", "resnet50", "resnet101")
FREEZE_POLICIES = ("head", "layer4", "all")
BAD_IMAGE_POLICIES = ("error", "skip")
# data.decode: where training images are decoded and augmented (auto: on the GPU when training on one).
DECODE_CHOICES = ("cpu", "gpu", "auto")
# trainer.precision: auto (this project's choice per device) or one of Lightning's values, as text
# (tests/test_user_errors.py holds this to Lightning's own list).
PRECISIONS = (
    "auto",
    *("transformer-engine", "transformer-engine-float16", "16-true", "16-mixed", "bf16-true", "bf16-mixed"),
    *("32-true", "64-true", "64", "32", "16", "bf16"),
)
