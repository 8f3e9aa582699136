/* sampler.h: picks the next token from one position's logits.
 *
 * Pipeline, in this order (core_sampling in core.h names the knobs):
 *   1. repetition penalty (llama.cpp's): for each distinct token among the
 *      last repeat_last_n accepted ones, a positive logit is divided by
 *      repeat_penalty and a non-positive one multiplied by it;
 *   2. frequency and presence penalties (OpenAI's), over every token
 *      accepted since samp_new/samp_reset:
 *      logit -= count * frequency_penalty + (count > 0) * presence_penalty;
 *   3. temperature <= 0: greedy, the largest logit (ties: the lowest id);
 *      otherwise top-k, temperature, softmax, top-p, min-p, then one draw
 *      from the renormalized survivors with our own PRNG (xoshiro256**
 *      seeded through splitmix64), so one seed gives one sequence
 *      everywhere. Top-p and min-p see the temperature-scaled
 *      distribution (llama.cpp's default chain applies them before the
 *      temperature).
 *
 * Knob semantics: top_k <= 0 or >= n_vocab is off; top_p >= 1 is off;
 * min_p <= 0 is off; repeat_penalty == 1 or repeat_last_n == 0 is off, and
 * repeat_last_n < 0 (or > 65536) means every accepted token. NaN knobs
 * count as off (NaN temperature: greedy). Filters always keep at least the
 * most likely token. Ties between equal logits are broken towards the lower
 * id everywhere, so results never depend on sort stability.
 *
 * Nothing here sorts the vocabulary: top-k is a heap pass (or a quickselect
 * for large k), and top-p buckets the candidates by logit, then sorts only
 * the one bucket holding the cut. NaN logits count as -inf.
 *
 * Ownership: samp_new() copies the parameters; the caller frees the sampler
 * with samp_free(). One sampler serves one generation stream at a time.
 */
#ifndef SAMPLER_H
#define SAMPLER_H

#include <stdint.h>

#include "core.h"

typedef struct samp samp;

/* NULL when out of memory or n_vocab <= 0. */
samp *samp_new(const core_sampling *p, int n_vocab);
void samp_free(samp *s); /* NULL is a no-op */

/* logits: n_vocab floats of one position; clobbered (penalties are applied
 * in place). Returns a token id in [0, n_vocab). */
int32_t samp_sample(samp *s, float *logits);

/* Records a generated (or forced) token for the penalties. CORE_EINVAL when
 * tok is out of range (nothing is recorded then). */
int samp_accept(samp *s, int32_t tok);

/* Forgets the accepted tokens and reseeds the PRNG from the parameters. */
void samp_reset(samp *s);

#endif
