"""Model loading: one code path from a matrix entry to an :class:`Embedder`.

Every model evaluation can score is a sentence-transformers model (local dir, hub id, or a
directory shipped in a Python package), a decoder LLM used with last-token pooling, or an
OpenAI-compatible embeddings endpoint.

The model types, one job each (each answers one question, and is made in one place):

==================  =============================================================  ==============================================
type                holds                                                          made by, when
==================  =============================================================  ==============================================
``ModelSpec``       what the user wrote for one entry: ``model:`` or ``train:``,   the matrix schema (:mod:`harness.schema`), when
                    kind, pooling, instructions, encode settings                   the matrix is read
``ModelReference``  where the reference points: ``path`` (absolute), ``hub`` (an   :func:`~.reference.resolve_reference`, plan time
                    id) or ``openai`` (an API model name)
``ModelIdentity``   what the model *is*, by content (the ``content`` string in     :func:`~.identity.model_identity`, plan time
                    step keys and fingerprints), and the exact thing to load: hub
                    commit, GGUF file, endpoint
``BackendDecision`` which backend loads it and why, and the layout read from its   :func:`~.backend.decide_backend`, plan time
                    files (pooling, Normalize, transformer folder, max length,
                    saved prompts)
``ResolvedModel``   the three above for one entry: what :func:`load_embedder`     :func:`~.loader.resolve_model` at plan time; a
                    loads, so the loaded model is the one keyed                    trained model's by ``ModelPlan.with_export``
                                                                                   once its export exists
``ModelPlan``       an entry as planned (:mod:`harness.steps.evaluate`): spec,     the planner, plan time; never changed after
                    key and results revision, and either its ``ResolvedModel``     (``with_export`` returns a new plan)
                    or its train step and the backend its export is expected to
                    get
``Embedder``        the loaded model: texts in, vectors out, its fingerprint       :func:`load_embedder`, when a cell first needs
                                                                                   vectors
==================  =============================================================  ==============================================
"""

from harness.evaluation.models.base import Embedder
from harness.evaluation.models.loader import load_embedder

__all__ = ["Embedder", "load_embedder"]
