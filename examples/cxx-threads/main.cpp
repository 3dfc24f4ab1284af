// C++ threads on HermitCore: two std::threads sharing a mutex-protected counter, a
// condition_variable hand-off, thread_local (with a destructor), std::async and an exception
// thrown and caught in a thread. Built with `x86_64-hermit-g++ -pthread` (flags.txt) and booted
// with 2 vCPUs (cpus.txt) by `doit smoke`.
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <future>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>

static std::mutex counter_mutex;
static long counter = 0;
static std::atomic<int> destroyed{0};

struct Tracker {
    int value = 0;
    ~Tracker() { destroyed.fetch_add(1); }
};
thread_local Tracker mine;

static void count(int id) {
    mine.value = id;
    for (int i = 0; i < 100000; ++i) {
        std::lock_guard<std::mutex> lock(counter_mutex);
        ++counter;
    }
}

int main() {
    std::thread a(count, 1), b(count, 2);
    a.join();
    b.join();
    std::printf("counter: %ld\n", counter);
    std::printf("thread_local destructors: %d\n", destroyed.load());

    std::mutex m;
    std::condition_variable cv;
    bool ready = false;
    int payload = 0, received = 0;
    std::thread consumer([&] {
        std::unique_lock<std::mutex> lock(m);
        cv.wait(lock, [&] { return ready; });
        received = payload;
    });
    {
        std::lock_guard<std::mutex> lock(m);
        payload = 42;
        ready = true;
    }
    cv.notify_one();
    consumer.join();
    std::printf("handed off: %d\n", received);

    int in_thread = -1;
    std::thread t([&] { mine.value = 10; in_thread = mine.value; });
    t.join();
    std::printf("thread_local: main %d, thread %d\n", mine.value, in_thread);

    auto answer = std::async(std::launch::async, [] { return 6 * 7; });
    std::printf("async: %d\n", answer.get());

    std::string caught;
    std::thread thrower([&] {
        try {
            throw std::runtime_error("thrown in a thread");
        } catch (const std::exception& e) {
            caught = e.what();
        }
    });
    thrower.join();
    std::printf("caught: %s\n", caught.c_str());
    std::printf("threads done\n");
    return 0;
}
