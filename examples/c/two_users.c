/*
 * Steer from C: two users, one prompt, two different answers. Infer each user's profile from a few of their
 * choices between two answers (user A picks the short one, user B the long one), then answer ONE prompt for both
 * users in ONE batch with greedy decoding, streaming user A's answer token by token. The same scenario as
 * examples/cpp/two_users.cpp and examples/rust/two_users.rs.
 *
 * It needs a bundle with a steerable policy and a text embedder (`steer train-policy` writes one to OUT/bundle).
 * Build and run it with `make example-policy-c`, or by hand against the library in target/release:
 *
 *     cargo build --release -p steer-ffi
 *     cc -std=c99 examples/c/two_users.c -Iinclude -Ltarget/release -lsteer -Wl,-rpath,$PWD/target/release \
 *        -o two_users
 *     ./two_users out/policy/bundle ["your prompt"]
 */
#include <stdio.h>

#include "steer.h"

#define CHOICES 3

/* One user's choices: for prompts[i] they preferred chosen[i] over rejected[i]. */
struct user {
    const char *name;
    const char *prompts[CHOICES];
    const char *chosen[CHOICES];
    const char *rejected[CHOICES];
};

/* What the streaming callback needs: which row to print. */
struct stream {
    size_t row;
    size_t tokens;
};

/* Reports a failed call with its status and message; returns whether it failed. */
static int failed(steer_status status, const char *call) {
    if (status == STEER_STATUS_OK) {
        return 0;
    }
    fprintf(stderr, "%s failed with %s (%d): %s\n", call, steer_status_name(status), (int)status,
            steer_last_error_message());
    return 1;
}

/* Called for every sampled token of every row; prints the text that row `stream->row` gained. */
static bool on_token(void *user_data, size_t row, uint32_t token_id, const char *text_delta, size_t len) {
    struct stream *stream = (struct stream *)user_data;
    (void)token_id;
    if (row == stream->row) {
        fwrite(text_delta, 1, len, stdout);
        fflush(stdout);
        stream->tokens++;
    }
    return true; /* false would stop every row */
}

int main(int argc, char **argv) {
    const char *bundle = argc > 1 ? argv[1] : "out/policy/bundle";
    const char *prompt = argc > 2 ? argv[2] : "How do I boil an egg?";
    static const struct user users[2] = {
        {"user A",
         {"How do I boil an egg?", "What is the capital of France?", "Any tips for sleeping better?"},
         {"Boil it for 9 minutes.", "Paris.", "Keep a regular bedtime."},
         {"Put the egg in a pot of cold water, bring it to a boil, then let it simmer for about nine minutes and "
          "cool it in cold water so that it peels easily.",
          "The capital of France is Paris, which is also its largest city and has been the seat of government for "
          "centuries.",
          "Go to bed at the same time every night, keep the room dark and cool, avoid screens and caffeine in the "
          "evening, and get some daylight in the morning."}},
        {"user B",
         {"How do I boil an egg?", "What is the capital of France?", "Any tips for sleeping better?"},
         {"Put the egg in a pot of cold water, bring it to a boil, then let it simmer for about nine minutes and "
          "cool it in cold water so that it peels easily.",
          "The capital of France is Paris, which is also its largest city and has been the seat of government for "
          "centuries.",
          "Go to bed at the same time every night, keep the room dark and cool, avoid screens and caffeine in the "
          "evening, and get some daylight in the morning."},
         {"Boil it for 9 minutes.", "Paris.", "Keep a regular bedtime."}},
    };
    steer_model *model = NULL;
    steer_profile *profiles[2] = {NULL, NULL};
    steer_generation *answers = NULL;
    steer_generation_params params;
    struct stream stream = {0, 0};
    bool has_policy = false, has_text = false;
    size_t i;
    int status = 1;

    if (steer_abi_version() != STEER_ABI_VERSION) {
        fprintf(stderr, "libsteer has ABI version %u, but steer.h is %u\n", (unsigned)steer_abi_version(),
                (unsigned)STEER_ABI_VERSION);
        return 1;
    }
    if (failed(steer_model_load(bundle, NULL, &model), "steer_model_load")) {
        return 1;
    }
    if (failed(steer_model_has_policy(model, &has_policy), "steer_model_has_policy") ||
        failed(steer_model_has_text(model, &has_text), "steer_model_has_text")) {
        goto done;
    }
    if (!has_policy || !has_text) {
        fprintf(stderr, "%s needs a policy and a text embedder (steer train-policy writes such a bundle)\n", bundle);
        goto done;
    }
    printf("loaded %s with libsteer %s\n", bundle, steer_version());

    /* Each user's profile, from their three choices. */
    for (i = 0; i < 2; i++) {
        if (failed(steer_model_infer_profile_text(model, users[i].prompts, users[i].chosen, users[i].rejected,
                                                  CHOICES, &profiles[i]),
                   "steer_model_infer_profile_text")) {
            goto done;
        }
    }

    /* The bundle's defaults, made greedy; both users in one batch, user A (row 0) streamed. */
    if (failed(steer_generation_params_default(model, &params), "steer_generation_params_default")) {
        goto done;
    }
    params.temperature = 0.0f;
    {
        const char *prompts[2];
        const steer_profile *rows[2];
        prompts[0] = prompt;
        prompts[1] = prompt;
        rows[0] = profiles[0];
        rows[1] = profiles[1];
        printf("prompt: %s\n", prompt);
        printf("streaming user A: ");
        fflush(stdout);
        if (failed(steer_model_generate(model, prompts, rows, 2, &params, on_token, &stream, &answers),
                   "steer_model_generate")) {
            printf("\n");
            goto done;
        }
        printf("\n");
    }

    for (i = 0; i < 2; i++) {
        const char *text = NULL;
        size_t len = 0, tokens = 0;
        steer_finish_reason reason = STEER_FINISH_REASON_EOS;
        if (failed(steer_generation_text(answers, i, &text, &len), "steer_generation_text") ||
            failed(steer_generation_token_count(answers, i, &tokens), "steer_generation_token_count") ||
            failed(steer_generation_finish_reason(answers, i, &reason), "steer_generation_finish_reason")) {
            goto done;
        }
        printf("%s: %.*s\n", users[i].name, (int)len, text);
        printf("  (%zu tokens, finished by %s)\n", tokens, steer_finish_reason_name((uint32_t)reason));
    }
    printf("user A's streamed tokens: %zu\n", stream.tokens);
    status = 0;

done:
    steer_generation_free(answers);
    steer_profile_free(profiles[0]);
    steer_profile_free(profiles[1]);
    steer_model_free(model);
    return status;
}
