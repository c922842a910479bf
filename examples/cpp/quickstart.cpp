// Steer from C++: load a bundle, turn two new users' five choices into profiles, and ask which of two candidates
// each would prefer. The same scenario as examples/rust/quickstart.rs and examples/c/quickstart.c, with the C
// handles owned by std::unique_ptr and failures turned into exceptions.
//
// Run `make demo` first, then `make example-cpp`, or build it by hand against the library in target/release:
//
//     cargo build --release -p steer-ffi
//     c++ -std=c++17 examples/cpp/quickstart.cpp -Iinclude -Ltarget/release -lsteer -Wl,-rpath,$PWD/target/release -o quickstart
//     ./quickstart out/demo/bundles/np-btl

#include <array>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "steer.h"

namespace steer {

// A failed call: its status and libsteer's message.
class Error : public std::runtime_error {
  public:
    Error(steer_status status, const std::string &call)
        : std::runtime_error(call + " failed with " + steer_status_name(status) + ": " + steer_last_error_message()),
          status_(status) {}
    steer_status status() const noexcept { return status_; }

  private:
    steer_status status_;
};

inline void check(steer_status status, const char *call) {
    if (status != STEER_STATUS_OK) {
        throw Error(status, call);
    }
}

// Deleters, so that std::unique_ptr releases each handle with its own steer_*_free.
struct ModelDeleter {
    void operator()(steer_model *model) const noexcept { steer_model_free(model); }
};
struct ProfileDeleter {
    void operator()(steer_profile *profile) const noexcept { steer_profile_free(profile); }
};
struct OptionsDeleter {
    void operator()(steer_options *options) const noexcept { steer_options_free(options); }
};

using ModelPtr = std::unique_ptr<steer_model, ModelDeleter>;
using ProfilePtr = std::unique_ptr<steer_profile, ProfileDeleter>;
using OptionsPtr = std::unique_ptr<steer_options, OptionsDeleter>;

// Load options with the defaults, changed one setting at a time.
class Options {
  public:
    Options() {
        steer_options *raw = nullptr;
        check(steer_options_new(&raw), "steer_options_new");
        options_.reset(raw);
    }
    Options &intra_op_threads(std::size_t threads) {
        check(steer_options_set_intra_op_threads(options_.get(), threads), "steer_options_set_intra_op_threads");
        return *this;
    }
    Options &session_pool_size(std::size_t size) {
        check(steer_options_set_session_pool_size(options_.get(), size), "steer_options_set_session_pool_size");
        return *this;
    }
    const steer_options *get() const noexcept { return options_.get(); }

  private:
    OptionsPtr options_;
};

// A loaded bundle. Thread-safe to share, like the steer_model it owns.
class Model {
  public:
    Model(const std::string &bundle, const Options &options) {
        steer_model *raw = nullptr;
        check(steer_model_load(bundle.c_str(), options.get(), &raw), "steer_model_load");
        model_.reset(raw);
    }

    std::string kind() const {
        steer_kind kind;
        check(steer_model_kind(model_.get(), &kind), "steer_model_kind");
        return steer_kind_name(kind);
    }

    std::size_t embedding_dim() const {
        std::size_t d = 0;
        check(steer_model_embedding_dim(model_.get(), &d), "steer_model_embedding_dim");
        return d;
    }

    // A profile from k choices; chosen and rejected hold k rows of embedding_dim() floats.
    ProfilePtr infer_profile(const std::vector<float> &chosen, const std::vector<float> &rejected) const {
        const std::size_t d = embedding_dim();
        if (chosen.size() != rejected.size() || chosen.size() % d != 0) {
            throw std::invalid_argument("chosen and rejected must hold the same number of rows of d floats");
        }
        steer_profile *raw = nullptr;
        check(steer_model_infer_profile(model_.get(), chosen.data(), rejected.data(), chosen.size() / d, d, &raw),
              "steer_model_infer_profile");
        return ProfilePtr(raw);
    }

    // The probability that the user prefers option a over option b (each embedding_dim() floats).
    float preference(const steer_profile &profile, const std::vector<float> &a, const std::vector<float> &b) const {
        if (a.size() != b.size()) {
            throw std::invalid_argument("a and b must have the same size");
        }
        float p = 0.0f;
        check(steer_model_preference(model_.get(), &profile, a.data(), b.data(), a.size(), &p),
              "steer_model_preference");
        return p;
    }

  private:
    ModelPtr model_;
};

}  // namespace steer

int main(int argc, char **argv) {
    const std::string bundle = argc > 1 ? argv[1] : "out/demo/bundles/np-btl";
    if (steer_abi_version() != STEER_ABI_VERSION) {
        std::fprintf(stderr, "libsteer has ABI version %u, but steer.h is %u\n", steer_abi_version(),
                     static_cast<unsigned>(STEER_ABI_VERSION));
        return 1;
    }
    struct User {
        const char *name;
        std::vector<float> chosen, rejected;  // chosen[i] was preferred over rejected[i]
    };
    const std::array<User, 2> users = {{
        {"user A", {0.92f, 0.81f, 0.66f, 0.95f, 0.40f}, {0.58f, 0.30f, 0.12f, 0.74f, 0.05f}},
        {"user B", {0.48f, 0.35f, 0.52f, 0.20f, 0.44f}, {0.91f, 0.77f, 0.63f, 0.85f, 0.10f}},
    }};
    const std::vector<float> a = {0.55f}, b = {0.95f};
    try {
        const steer::Model model(bundle, steer::Options().intra_op_threads(1));
        if (model.embedding_dim() != 1) {
            std::fprintf(stderr, "this example needs a bundle of the 1-D task (d = 1)\n");
            return 1;
        }
        std::printf("loaded %s bundle from %s with libsteer %s\n", model.kind().c_str(), bundle.c_str(),
                    steer_version());
        for (const User &user : users) {
            const steer::ProfilePtr profile = model.infer_profile(user.chosen, user.rejected);
            const float p = model.preference(*profile, a, b);
            std::printf("%s: P(prefers y = %.2f) = %.3f, P(prefers y = %.2f) = %.3f\n", user.name, a[0], p, b[0],
                        1.0f - p);
        }
    } catch (const std::exception &e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 1;
    }
    return 0;
}
