"""The types a model's skops file may hold beyond skops' own safe defaults: the explicit list mlsvc loads with."""

from __future__ import annotations

# Every type the train / validate / select loop and the recommender loop can put in a fitted model that skops
# does not already trust. Anything else in a file refuses the load. tests/test_trusted_types.py fits every family
# and every recipe transform and checks that their files need nothing beyond this list.
TRUSTED_TYPES: tuple[str, ...] = (
    # numpy and scipy containers skops reconstructs without running code of the file's choosing
    "numpy.dtype",
    "scipy.sparse._csr.csr_matrix",
    # scikit-learn internals of the families the loop selects
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
    "sklearn.tree._tree.Tree",
    "sklearn.utils._bunch.Bunch",  # a voting ensemble's named_estimators_
    # mlsvc's own transforms and functions in a supervised pipeline
    "mlsvc.training.recipe.CappedSVD",
    "mlsvc.training.recipe.CrossFeatures",
    "mlsvc.training.recipe.SeededFolds",
    "mlsvc.training.recipe.categorical_as_text",
    "mlsvc.training.recipe.fill_text",
    # a skewed regression target learnt on the log scale (TransformedTargetRegressor's functions)
    "mlsvc.training.targets.expm1_target",
    "mlsvc.training.targets.log1p_target",
    # an Amazon ML recipe's token outputs, their vectorizer's analyzer, and the names of its features
    "mlsvc.training.recipe_language.TokenFeatures",
    "mlsvc.training.recipe_language.given_tokens",
    "mlsvc.training.recipe_language.level_name",
    "mlsvc.training.recipe_language.output_feature_name",
    # the recommender and its candidates
    "mlsvc.recommendation.model.Recommender",
    "mlsvc.recommendation.candidates.EASE",
    "mlsvc.recommendation.candidates.ItemKNN",
    "mlsvc.recommendation.candidates.MostPopular",
    "mlsvc.recommendation.candidates.PureSVD",
)
