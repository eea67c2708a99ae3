"""The zoo: recipes (``registry``), end-to-end builds (``build``) and loaders (``loaders``)."""

from longzoo.zoo.loaders import LongformerZh, load, load_tokenizer
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
