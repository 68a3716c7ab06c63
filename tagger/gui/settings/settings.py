"""What Tagger remembers between runs, kept in QSettings.

The composition root decides which QSettings to use, so tests point it at a
temporary file and never touch the user's own settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings

from tagger.exchange.sidecar_names import DEFAULT_NAMING, SidecarNaming
from tagger.gui.photos.gallery import DEFAULT_TILE_SIZE, MAX_TILE_SIZE, MIN_TILE_SIZE
from tagger.gui.settings.appearance import APPEARANCES, SYSTEM
from tagger.inference.networks import NETWORK_OPTIONS

DEVICE_CHOICES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")
# "auto" leaves the network to the machine (tagger.inference.choice.default_network).
NETWORK_CHOICES: tuple[str, ...] = ("auto", *NETWORK_OPTIONS)

_DEVICE = "compute/device"
_NETWORK = "compute/network"
_APPEARANCE = "look/appearance"
_TILE_SIZE = "gallery/thumbnail_size"
_LIBRARY = "library/last"
_GEOMETRY = "window/geometry"
_WINDOW_STATE = "window/state"
_SPLITTER = "window/splitter"
_SIDECAR_NAMING = "export/sidecar_naming"


@dataclass(frozen=True)
class Preferences:
    """The choices the settings dialog edits."""

    device: str
    thumbnail_size: int
    library_location: Path | None
    appearance: str = SYSTEM  # "system", "light" or "dark"
    network: str = "auto"  # the network of new models: "auto", "lite0", "lite1" or "lite2"


class AppSettings:
    def __init__(self, store: QSettings) -> None:
        self._store = store

    # -- preferences -------------------------------------------------------------

    @property
    def device(self) -> str:
        value = str(self._store.value(_DEVICE, "auto"))
        return value if value in DEVICE_CHOICES else "auto"

    @device.setter
    def device(self, value: str) -> None:
        self._store.setValue(_DEVICE, value if value in DEVICE_CHOICES else "auto")

    @property
    def network(self) -> str:
        value = str(self._store.value(_NETWORK, "auto"))
        return value if value in NETWORK_CHOICES else "auto"

    @network.setter
    def network(self, value: str) -> None:
        self._store.setValue(_NETWORK, value if value in NETWORK_CHOICES else "auto")

    @property
    def appearance(self) -> str:
        value = str(self._store.value(_APPEARANCE, SYSTEM))
        return value if value in APPEARANCES else SYSTEM

    @appearance.setter
    def appearance(self, value: str) -> None:
        self._store.setValue(_APPEARANCE, value if value in APPEARANCES else SYSTEM)

    @property
    def sidecar_naming(self) -> SidecarNaming:
        """How new XMP sidecars are named (existing ones are updated whatever their name)."""
        try:
            return SidecarNaming(str(self._store.value(_SIDECAR_NAMING, DEFAULT_NAMING.value)))
        except ValueError:
            return DEFAULT_NAMING

    @sidecar_naming.setter
    def sidecar_naming(self, value: SidecarNaming) -> None:
        self._store.setValue(_SIDECAR_NAMING, value.value)

    @property
    def thumbnail_size(self) -> int:
        try:
            size = int(self._store.value(_TILE_SIZE, DEFAULT_TILE_SIZE))
        except (TypeError, ValueError):
            size = DEFAULT_TILE_SIZE
        return max(MIN_TILE_SIZE, min(MAX_TILE_SIZE, size))

    @thumbnail_size.setter
    def thumbnail_size(self, value: int) -> None:
        self._store.setValue(_TILE_SIZE, int(value))

    @property
    def last_library(self) -> Path | None:
        value = self._store.value(_LIBRARY, "")
        return Path(str(value)) if value else None

    @last_library.setter
    def last_library(self, value: Path | None) -> None:
        self._store.setValue(_LIBRARY, str(value) if value else "")

    def preferences(self) -> Preferences:
        return Preferences(self.device, self.thumbnail_size, self.last_library, self.appearance, self.network)

    def save_preferences(self, preferences: Preferences) -> None:
        self.device = preferences.device
        self.thumbnail_size = preferences.thumbnail_size
        self.last_library = preferences.library_location
        self.appearance = preferences.appearance
        self.network = preferences.network
        self._store.sync()

    # -- window --------------------------------------------------------------------

    def window_geometry(self) -> QByteArray | None:
        return _bytes_or_none(self._store.value(_GEOMETRY))

    def window_state(self) -> QByteArray | None:
        return _bytes_or_none(self._store.value(_WINDOW_STATE))

    def splitter_state(self) -> QByteArray | None:
        return _bytes_or_none(self._store.value(_SPLITTER))

    def save_window(self, geometry: QByteArray, state: QByteArray, splitter: QByteArray) -> None:
        self._store.setValue(_GEOMETRY, geometry)
        self._store.setValue(_WINDOW_STATE, state)
        self._store.setValue(_SPLITTER, splitter)
        self._store.sync()


def _bytes_or_none(value: object) -> QByteArray | None:
    if isinstance(value, QByteArray) and not value.isEmpty():
        return value
    if isinstance(value, (bytes, bytearray)) and value:
        return QByteArray(bytes(value))
    return None
