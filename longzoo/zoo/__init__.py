"""The zoo: recipes (``registry``) and end-to-end builds (``build``); the loaders live in ``longzoo.models.loading``."""

from longzoo.models.loading import LongformerZh, load, load_tokenizer
from longzoo.zoo.registry import RECIPES, PretrainRecipe, Recipe, get_recipe, register, unregister

__all__ = [
    "RECIPES",
    "LongformerZh",
    "PretrainRecipe",
    "Recipe",
    "get_recipe",
    "load",
    "load_tokenizer",
    "register",
    "unregister",
]
