// Steer from C++: two users, one prompt, two different answers. Infer each user's profile from a few of their
// choices between two answers (user A picks the short one, user B the long one), then answer ONE prompt for both
// users in ONE batch with greedy decoding, streaming user A's answer token by token. The same scenario as
// examples/c/two_users.c and examples/rust/two_users.rs, with the C handles owned by std::unique_ptr and failures
// turned into exceptions.
//
// It needs a bundle with a steerable policy and a text embedder (`steer train-policy` writes one to OUT/bundle).
// Build and run it with `make example-policy-cpp`, or by hand against the library in target/release:
//
//     cargo build --release -p steer-ffi
//     c++ -std=c++17 examples/cpp/two_users.cpp -Iinclude -Ltarget/release -lsteer -Wl,-rpath,$PWD/target/release -o two_users
//     ./two_users out/policy/bundle ["your prompt"]

#include <cstdio>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
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
struct GenerationDeleter {
    void operator()(steer_generation *generation) const noexcept { steer_generation_free(generation); }
};

using ModelPtr = std::unique_ptr<steer_model, ModelDeleter>;
using ProfilePtr = std::unique_ptr<steer_profile, ProfileDeleter>;
using GenerationPtr = std::unique_ptr<steer_generation, GenerationDeleter>;

// One choice of a user: for `prompt` they preferred `chosen` over `rejected`.
struct Choice {
    const char *prompt;
    const char *chosen;
    const char *rejected;
};

// A user's profile. Immutable; may outlive the model.
class Profile {
  public:
    explicit Profile(steer_profile *raw) : profile_(raw) {}
    const steer_profile *get() const noexcept { return profile_.get(); }

  private:
    ProfilePtr profile_;
};

// One generated reply, copied out of the result.
struct Reply {
    std::string text;
    std::size_t tokens;
    steer_finish_reason finish;
};

// Called with (row, token id, text delta); returns whether to go on.
using TokenCallback = std::function<bool(std::size_t, std::uint32_t, std::string_view)>;

// A loaded bundle. Thread-safe to share, like the steer_model it owns.
class Model {
  public:
    explicit Model(const std::string &bundle) {
        steer_model *raw = nullptr;
        check(steer_model_load(bundle.c_str(), nullptr, &raw), "steer_model_load");
        model_.reset(raw);
    }

    bool has_policy() const {
        bool value = false;
        check(steer_model_has_policy(model_.get(), &value), "steer_model_has_policy");
        return value;
    }

    bool has_text() const {
        bool value = false;
        check(steer_model_has_text(model_.get(), &value), "steer_model_has_text");
        return value;
    }

    Profile infer_profile_text(const std::vector<Choice> &choices) const {
        std::vector<const char *> prompts, chosen, rejected;
        for (const Choice &choice : choices) {
            prompts.push_back(choice.prompt);
            chosen.push_back(choice.chosen);
            rejected.push_back(choice.rejected);
        }
        steer_profile *raw = nullptr;
        check(steer_model_infer_profile_text(model_.get(), prompts.data(), chosen.data(), rejected.data(),
                                             choices.size(), &raw),
              "steer_model_infer_profile_text");
        return Profile(raw);
    }

    // The bundle's generation defaults. Their stop strings are owned by the library.
    steer_generation_params generation_defaults() const {
        steer_generation_params params;
        check(steer_generation_params_default(model_.get(), &params), "steer_generation_params_default");
        return params;
    }

    // Replies to prompts[i] for profiles[i], all in one batch; `on_token` (if set) sees every token.
    std::vector<Reply> generate(const std::vector<std::string> &prompts, const std::vector<const Profile *> &profiles,
                                const steer_generation_params &params, TokenCallback on_token = nullptr) const {
        if (prompts.size() != profiles.size()) {
            throw std::invalid_argument("one profile per prompt");
        }
        std::vector<const char *> prompt_ptrs;
        std::vector<const steer_profile *> profile_ptrs;
        for (std::size_t i = 0; i < prompts.size(); i++) {
            prompt_ptrs.push_back(prompts[i].c_str());
            profile_ptrs.push_back(profiles[i]->get());
        }
        steer_generation *raw = nullptr;
        check(steer_model_generate(model_.get(), prompt_ptrs.data(), profile_ptrs.data(), prompts.size(), &params,
                                   on_token ? &trampoline : nullptr, on_token ? &on_token : nullptr, &raw),
              "steer_model_generate");
        GenerationPtr result(raw);
        std::vector<Reply> replies;
        for (std::size_t row = 0; row < prompts.size(); row++) {
            const char *text = nullptr;
            std::size_t len = 0;
            Reply reply{};
            check(steer_generation_text(result.get(), row, &text, &len), "steer_generation_text");
            check(steer_generation_token_count(result.get(), row, &reply.tokens), "steer_generation_token_count");
            check(steer_generation_finish_reason(result.get(), row, &reply.finish), "steer_generation_finish_reason");
            reply.text.assign(text, len);
            replies.push_back(std::move(reply));
        }
        return replies;
    }

  private:
    // The C callback: forwards to the std::function behind user_data. Exceptions must not cross into libsteer,
    // so one thrown by the callback stops generation.
    static bool trampoline(void *user_data, std::size_t row, std::uint32_t token_id, const char *text, std::size_t len) {
        try {
            return (*static_cast<TokenCallback *>(user_data))(row, token_id, std::string_view(text, len));
        } catch (...) {
            return false;
        }
    }

    ModelPtr model_;
};

} // namespace steer

int main(int argc, char **argv) {
    const std::string bundle = argc > 1 ? argv[1] : "out/policy/bundle";
    const std::string prompt = argc > 2 ? argv[2] : "How do I boil an egg?";
    const char *short_answers[] = {"Boil it for 9 minutes.", "Paris.", "Keep a regular bedtime."};
    const char *long_answers[] = {
        "Put the egg in a pot of cold water, bring it to a boil, then let it simmer for about nine minutes and cool "
        "it in cold water so that it peels easily.",
        "The capital of France is Paris, which is also its largest city and has been the seat of government for "
        "centuries.",
        "Go to bed at the same time every night, keep the room dark and cool, avoid screens and caffeine in the "
        "evening, and get some daylight in the morning."};
    const char *questions[] = {"How do I boil an egg?", "What is the capital of France?",
                               "Any tips for sleeping better?"};
    try {
        if (steer_abi_version() != STEER_ABI_VERSION) {
            std::fprintf(stderr, "libsteer has ABI version %u, but steer.h is %u\n", unsigned(steer_abi_version()),
                         unsigned(STEER_ABI_VERSION));
            return 1;
        }
        steer::Model model(bundle);
        if (!model.has_policy() || !model.has_text()) {
            std::fprintf(stderr, "%s needs a policy and a text embedder (steer train-policy writes such a bundle)\n",
                         bundle.c_str());
            return 1;
        }
        std::printf("loaded %s with libsteer %s\n", bundle.c_str(), steer_version());

        // User A prefers the short answers, user B the long ones.
        std::vector<steer::Choice> a, b;
        for (int i = 0; i < 3; i++) {
            a.push_back({questions[i], short_answers[i], long_answers[i]});
            b.push_back({questions[i], long_answers[i], short_answers[i]});
        }
        const steer::Profile user_a = model.infer_profile_text(a);
        const steer::Profile user_b = model.infer_profile_text(b);

        steer_generation_params params = model.generation_defaults();
        params.temperature = 0.0f; // greedy
        std::size_t streamed = 0;
        std::printf("prompt: %s\n", prompt.c_str());
        std::printf("streaming user A: ");
        std::fflush(stdout);
        const std::vector<steer::Reply> replies =
            model.generate({prompt, prompt}, {&user_a, &user_b}, params,
                           [&streamed](std::size_t row, std::uint32_t, std::string_view delta) {
                               if (row == 0) {
                                   std::fwrite(delta.data(), 1, delta.size(), stdout);
                                   std::fflush(stdout);
                                   streamed++;
                               }
                               return true;
                           });
        std::printf("\n");
        const char *names[] = {"user A", "user B"};
        for (std::size_t i = 0; i < replies.size(); i++) {
            std::printf("%s: %s\n", names[i], replies[i].text.c_str());
            std::printf("  (%zu tokens, finished by %s)\n", replies[i].tokens,
                        steer_finish_reason_name(std::uint32_t(replies[i].finish)));
        }
        std::printf("user A's streamed tokens: %zu\n", streamed);
    } catch (const std::exception &e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 1;
    }
    return 0;
}
