"""Model cards rendered from ``longzoo.json`` with a Jinja template (``template.md``)."""

from longzoo.cards.metadata import HUB_LICENSES, validate_metadata
from longzoo.cards.render import CARD, CardSettings, RenderedCard, render_card

__all__ = ["CARD", "HUB_LICENSES", "CardSettings", "RenderedCard", "render_card", "validate_metadata"]
