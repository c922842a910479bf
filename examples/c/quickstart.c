/*
 * Steer from C: load a bundle, turn two new users' five choices into profiles, and ask which of two candidates
 * each would prefer. The same scenario as examples/rust/quickstart.rs and examples/cpp/quickstart.cpp.
 *
 * Run `make demo` first, then `make example-c`, or build it by hand against the library in target/release:
 *
 *     cargo build --release -p steer-ffi
 *     cc -std=c99 examples/c/quickstart.c -Iinclude -Ltarget/release -lsteer -Wl,-rpath,$PWD/target/release \
 *        -o quickstart
 *     ./quickstart out/demo/bundles/np-btl
 *
 * or against an installed libsteer: cc quickstart.c $(pkg-config --cflags --libs steer) -o quickstart.
 *
 * The demo bundle is the synthetic 1-D task: an option is one number y in [0, 1] (d = 1). Users of one hidden
 * type prefer larger y; users of the other like y near 0.5 and dislike large y.
 */
#include <stdio.h>

#include "steer.h"

#define CHOICES 5

/* One user: chosen[i] was preferred over rejected[i]. */
struct user {
    const char *name;
    float chosen[CHOICES];
    float rejected[CHOICES];
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

int main(int argc, char **argv) {
    const char *bundle = argc > 1 ? argv[1] : "out/demo/bundles/np-btl";
    static const struct user users[2] = {
        {"user A", {0.92f, 0.81f, 0.66f, 0.95f, 0.40f}, {0.58f, 0.30f, 0.12f, 0.74f, 0.05f}},
        {"user B", {0.48f, 0.35f, 0.52f, 0.20f, 0.44f}, {0.91f, 0.77f, 0.63f, 0.85f, 0.10f}},
    };
    static const float candidates[2] = {0.55f, 0.95f};
    steer_model *model = NULL;
    steer_kind kind;
    size_t d = 0;
    size_t i;
    int status = 0;

    if (steer_abi_version() != STEER_ABI_VERSION) {
        fprintf(stderr, "libsteer has ABI version %u, but steer.h is %u\n", (unsigned)steer_abi_version(),
                (unsigned)STEER_ABI_VERSION);
        return 1;
    }
    if (failed(steer_model_load(bundle, NULL, &model), "steer_model_load")) {
        return 1;
    }
    if (failed(steer_model_kind(model, &kind), "steer_model_kind") ||
        failed(steer_model_embedding_dim(model, &d), "steer_model_embedding_dim")) {
        steer_model_free(model);
        return 1;
    }
    if (d != 1) {
        fprintf(stderr, "this example needs a bundle of the 1-D task (d = 1), %s has d = %zu\n", bundle, d);
        steer_model_free(model);
        return 1;
    }
    printf("loaded %s bundle from %s with libsteer %s\n", steer_kind_name(kind), bundle, steer_version());

    for (i = 0; i < 2; i++) {
        steer_profile *profile = NULL;
        float p = 0.0f;
        if (failed(steer_model_infer_profile(model, users[i].chosen, users[i].rejected, CHOICES, 1, &profile),
                   "steer_model_infer_profile") ||
            failed(steer_model_preference(model, profile, &candidates[0], &candidates[1], 1, &p),
                   "steer_model_preference")) {
            status = 1;
        } else {
            printf("%s: P(prefers y = %.2f) = %.3f, P(prefers y = %.2f) = %.3f\n", users[i].name, candidates[0], p,
                   candidates[1], 1.0f - p);
        }
        steer_profile_free(profile); /* NULL if inference failed, which is fine */
    }
    steer_model_free(model);
    return status;
}
