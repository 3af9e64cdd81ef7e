// Failure-domain groups: upgrade 8 datacenters, one device per redundancy
// group at a time; a failed upgrade stops its group and the report says what
// happened to every device.
#include <pools/pools.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

// How many devices of each group are down right now, and the most ever.
struct Downtime {
  std::atomic<int> now{0}, most{0};
};

void upgrade(const std::string& device, Downtime& group) {
  const int down = group.now.fetch_add(1) + 1;
  int most = group.most.load();
  while (down > most && !group.most.compare_exchange_weak(most, down)) {
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(1));  // the work, simulated
  group.now.fetch_sub(1);
  if (device == "dc5/spine2") throw std::runtime_error("image checksum mismatch");
}

int main(int argc, char** argv) {
  pools::init(argc, argv);
  pools::PoolBase& pool = pools::get_thread_pool("upgrades", 8);
  pools::Groups groups(pool);  // default: one task per group at a time, stop on failure

  std::map<std::string, std::unique_ptr<Downtime>> downtime;
  std::vector<pools::Task<void>> tasks;
  auto add = [&](const std::string& group, const std::string& device) {
    auto& d = downtime[group];
    if (!d) d = std::make_unique<Downtime>();
    tasks.push_back(groups.add_task(group, device, upgrade, device, std::ref(*d)));
  };
  for (int dc = 1; dc <= 8; ++dc) {
    const std::string site = "dc" + std::to_string(dc);
    for (int e = 1; e <= 2; ++e) add(site + "/edge", site + "/edge" + std::to_string(e));
    for (int s = 1; s <= 4; ++s) add(site + "/spine", site + "/spine" + std::to_string(s));
    for (int t = 1; t <= 50; ++t) {
      const std::string pair = site + "/tor" + std::to_string(t);
      add(pair, pair + "a");
      add(pair, pair + "b");
    }
  }

  groups.wait();
  std::printf("%s", groups.report().to_string().c_str());

  int most = 0;
  for (const auto& [group, d] : downtime) most = std::max(most, d->most.load());
  std::printf("most devices of one group down at once: %d\n", most);

  // Each handle says what happened to its device.
  for (const auto& t : tasks) {
    try {
      t.wait();
    } catch (const pools::Skipped& e) {
      if (t.name() == "dc5/spine3") std::printf("%s\n", e.what());
    } catch (const std::runtime_error& e) {
      std::printf("%s failed: %s\n", t.name().c_str(), e.what());
    }
  }
  return most == 1 ? 0 : 1;
}
