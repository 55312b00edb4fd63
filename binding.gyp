{
  "variables": {
    # Set by spdk/probe.js: "true" when an installed SPDK was found (pkg-config or SPDK_DIR).
    "spdk_found": "<!(node spdk/probe.js --found)"
  },
  "target_defaults": {
    "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
    "cflags_cc": ["-std=c++17", "-fexceptions", "-frtti", "-fvisibility=hidden", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
    "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
    "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
    "configurations": {
      "Release": { "cflags_cc": ["-O2", "-g"] },
      "Debug": { "cflags_cc": ["-O0", "-g3"] }
    }
  },
  "targets": [
    {
      "target_name": "spdk_builtin",
      "sources": [
        "native/common/napi_util.cc",
        "native/common/dma_buffer.cc",
        "native/common/io_desc.cc",
        "native/common/nvme/host_desc.cc",
        "native/common/nvme/host_slots.cc",
        "native/common/buffer_table.cc",
        "native/common/huge_map.cc",
        "native/builtin/reactor/reactor.cc",
        "native/builtin/reactor/uv_reactor.cc",
        "native/builtin/bdev/bdev.cc",
        "native/builtin/bdev/malloc.cc",
        "native/builtin/bdev/record.cc",
        "native/builtin/bdev/uring.cc",
        "native/builtin/bdev/file.cc",
        "native/builtin/io/io_queue.cc",
        "native/builtin/io/native_bench.cc",
        "native/common/crc32c.cc",
        "native/builtin/lvol/format.cc",
        "native/builtin/lvol/lvol.cc",
        "native/builtin/lvol/store.cc",
        "native/builtin/lvol/module.cc",
        "native/builtin/lvol/engine_lvol.cc",
        "native/common/nvme_tcp/pdu.cc",
        "native/common/nvme_tcp/napi_codec.cc",
        "native/builtin/nvmf/target.cc",
        "native/builtin/nvmf/tcp_conn.cc",
        "native/builtin/nvmf/engine_nvmf.cc",
        "native/builtin/nvme/host_qpair.cc",
        "native/builtin/nvme/uv_driver.cc",
        "native/builtin/nvme/host_ctrlr.cc",
        "native/builtin/nvme/js_ctrlr.cc",
        "native/builtin/nvme/js_qpair.cc",
        "native/builtin/engine.cc",
        "native/builtin/addon.cc"
      ],
      "libraries": ["-lpthread"]
    }
  ],
  "conditions": [
    ["spdk_found=='true'", {
      "targets": [
        {
          "target_name": "spdk_libspdk",
          "sources": [
            "native/common/napi_util.cc",
            "native/common/dma_buffer.cc",
            "native/common/io_desc.cc",
            "native/common/nvme/host_desc.cc",
            "native/common/nvme/host_slots.cc",
            "native/common/buffer_table.cc",
            "native/libspdk/log.cc",
            "native/libspdk/app.cc",
            "native/libspdk/js_app.cc",
            "native/libspdk/reactor_link.cc",
            "native/libspdk/bdev_queue.cc",
            "native/libspdk/nvme/js_ctrlr.cc",
            "native/libspdk/nvme/js_qpair.cc",
            "native/libspdk/addon.cc"
          ],
          "cflags_cc": ["<!@(node spdk/probe.js --cflags)"],
          "libraries": ["<!@(node spdk/probe.js --libs)"]
        }
      ]
    }]
  ]
}
