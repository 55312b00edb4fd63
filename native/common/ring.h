// Lockless queues used between the JS thread and reactor threads.
//
// SpscRing: one producer thread, one consumer thread, fixed power-of-two capacity.
// MpscQueue: many producers, one consumer; intrusive (the node carries the link), never blocks.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace spdk_node {

// Power-of-two ring of trivially copyable items. Push and Pop never block; they report
// full/empty. The producer publishes with a release store of tail_, the consumer with a
// release store of head_; each side reads the other's index with acquire.
template <typename T>
class SpscRing {
 public:
  explicit SpscRing(uint32_t capacity) {
    uint32_t cap = 1;
    while (cap < capacity) cap <<= 1;
    items_.resize(cap);
    mask_ = cap - 1;
  }
  uint32_t capacity() const { return mask_ + 1; }

  bool Push(const T& item) {
    uint32_t tail = tail_.load(std::memory_order_relaxed);
    if (tail - head_.load(std::memory_order_acquire) > mask_) return false;
    items_[tail & mask_] = item;
    tail_.store(tail + 1, std::memory_order_release);
    return true;
  }
  bool Pop(T* out) {
    uint32_t head = head_.load(std::memory_order_relaxed);
    if (head == tail_.load(std::memory_order_acquire)) return false;
    *out = items_[head & mask_];
    head_.store(head + 1, std::memory_order_release);
    return true;
  }
  bool Empty() const {
    return head_.load(std::memory_order_acquire) == tail_.load(std::memory_order_acquire);
  }

 private:
  std::vector<T> items_;
  uint32_t mask_ = 0;
  alignas(64) std::atomic<uint32_t> head_{0};
  alignas(64) std::atomic<uint32_t> tail_{0};
};

// Intrusive multi-producer single-consumer queue (Vyukov). T must have a member
// `std::atomic<T*> mpsc_next`. Push is wait-free; Pop may briefly report empty while a
// producer is between its two steps, which callers treat as "try again on the next poll".
template <typename T>
class MpscQueue {
 public:
  MpscQueue() : head_(&stub_), tail_(&stub_) { stub_.mpsc_next.store(nullptr); }

  void Push(T* node) {
    node->mpsc_next.store(nullptr, std::memory_order_relaxed);
    T* prev = head_.exchange(node, std::memory_order_acq_rel);
    prev->mpsc_next.store(node, std::memory_order_release);
  }

  T* Pop() {
    T* tail = tail_;
    T* next = tail->mpsc_next.load(std::memory_order_acquire);
    if (tail == &stub_) {
      if (next == nullptr) return nullptr;
      tail_ = next;
      tail = next;
      next = next->mpsc_next.load(std::memory_order_acquire);
    }
    if (next != nullptr) {
      tail_ = next;
      return tail;
    }
    if (tail != head_.load(std::memory_order_acquire)) return nullptr;  // producer mid-push
    Push(&stub_);
    next = tail->mpsc_next.load(std::memory_order_acquire);
    if (next != nullptr) {
      tail_ = next;
      return tail;
    }
    return nullptr;
  }

  bool Empty() const {
    T* tail = tail_;
    return tail == &stub_ && tail->mpsc_next.load(std::memory_order_acquire) == nullptr &&
           head_.load(std::memory_order_acquire) == &stub_;
  }

 private:
  alignas(64) std::atomic<T*> head_;
  alignas(64) T* tail_;
  T stub_;
};

}  // namespace spdk_node
