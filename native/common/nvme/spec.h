// NVMe and NVMe over Fabrics constants (NVMe Base 2.0, NVM Command Set 1.0, NVMe-oF 1.1):
// opcodes, status codes, register and data-structure offsets. Shared by target and host.
#pragma once

#include <cstdint>

namespace spdk_node {
namespace nvme {

// ---- Submission queue entry (64 bytes): byte offsets.
namespace sqe {
constexpr uint32_t kOpc = 0, kFuse = 1, kCid = 2, kNsid = 4, kMptr = 16, kDptr = 24;
constexpr uint32_t kCdw10 = 40, kCdw11 = 44, kCdw12 = 48, kCdw13 = 52, kCdw14 = 56, kCdw15 = 60;
// Fabrics command type (opcode 0x7F).
constexpr uint32_t kFctype = 4;
// SGL descriptor in DPTR: address 8, length 4, 3 reserved, identifier byte (type << 4 | subtype).
constexpr uint32_t kSglAddr = 24, kSglLen = 32, kSglId = 39;
}  // namespace sqe

// SGL descriptor identifiers NVMe/TCP uses.
constexpr uint8_t kSglDataBlockOffset = 0x01;  // data block, subtype offset: in-capsule data
constexpr uint8_t kSglTransportDataBlock = 0x5A;  // transport data block, transport specific

// ---- Completion queue entry (16 bytes).
namespace cqe {
constexpr uint32_t kDw0 = 0, kDw1 = 4, kSqhd = 8, kSqid = 10, kCid = 12, kStatus = 14;
}
// Status field (bits of the 16-bit word at kStatus, phase tag at bit 0).
inline uint16_t MakeStatus(uint8_t sct, uint8_t sc, bool dnr) {
  return static_cast<uint16_t>((sc << 1) | ((sct & 7) << 9) | (dnr ? 0x8000 : 0));
}

// Status code types.
constexpr uint8_t kSctGeneric = 0, kSctCommandSpecific = 1, kSctMedia = 2, kSctPath = 3;

// Generic status codes.
namespace sc {
constexpr uint8_t kSuccess = 0x00;
constexpr uint8_t kInvalidOpcode = 0x01;
constexpr uint8_t kInvalidField = 0x02;
constexpr uint8_t kCommandIdConflict = 0x03;
constexpr uint8_t kDataTransferError = 0x04;
constexpr uint8_t kInternalDeviceError = 0x06;
constexpr uint8_t kAbortedByRequest = 0x07;
constexpr uint8_t kAbortedSqDeletion = 0x08;
constexpr uint8_t kInvalidNamespaceOrFormat = 0x0B;
constexpr uint8_t kCommandSequenceError = 0x0C;
constexpr uint8_t kInvalidSglSegDescriptor = 0x0D;
constexpr uint8_t kDataSglLengthInvalid = 0x0F;
constexpr uint8_t kSglDescriptorTypeInvalid = 0x11;
constexpr uint8_t kSglOffsetInvalid = 0x16;
constexpr uint8_t kNamespaceWriteProtected = 0x20;
constexpr uint8_t kCommandInterrupted = 0x21;
constexpr uint8_t kTransientTransportError = 0x22;
constexpr uint8_t kLbaOutOfRange = 0x80;
constexpr uint8_t kCapacityExceeded = 0x81;
constexpr uint8_t kNamespaceNotReady = 0x82;
// Command specific
constexpr uint8_t kInvalidQueueIdentifier = 0x01;
constexpr uint8_t kAbortCommandLimitExceeded = 0x03;
constexpr uint8_t kAsyncEventRequestLimitExceeded = 0x05;
constexpr uint8_t kInvalidLogPage = 0x09;
constexpr uint8_t kFeatureIdNotSaveable = 0x0D;
constexpr uint8_t kFeatureNotChangeable = 0x0E;
// Fabrics (command specific)
constexpr uint8_t kConnectIncompatibleFormat = 0x80;
constexpr uint8_t kConnectControllerBusy = 0x81;
constexpr uint8_t kConnectInvalidParameters = 0x82;
constexpr uint8_t kConnectRestartDiscovery = 0x83;
constexpr uint8_t kConnectInvalidHost = 0x84;
// Media and data integrity
constexpr uint8_t kWriteFault = 0x80;
constexpr uint8_t kUnrecoveredReadError = 0x81;
constexpr uint8_t kCompareFailure = 0x85;
constexpr uint8_t kAccessDenied = 0x86;
}  // namespace sc

// ---- Opcodes.
namespace opc {
// Admin
constexpr uint8_t kDeleteIoSq = 0x00, kCreateIoSq = 0x01, kGetLogPage = 0x02, kDeleteIoCq = 0x04,
                  kCreateIoCq = 0x05, kIdentify = 0x06, kAbort = 0x08, kSetFeatures = 0x09,
                  kGetFeatures = 0x0A, kAsyncEventRequest = 0x0C, kKeepAlive = 0x18;
constexpr uint8_t kFabrics = 0x7F;
// NVM I/O
constexpr uint8_t kFlush = 0x00, kWrite = 0x01, kRead = 0x02, kCompare = 0x05,
                  kWriteZeroes = 0x08, kDatasetManagement = 0x09;
}  // namespace opc

// Fabrics command types.
namespace fctype {
constexpr uint8_t kPropertySet = 0x00, kConnect = 0x01, kPropertyGet = 0x04,
                  kAuthSend = 0x05, kAuthRecv = 0x06, kDisconnect = 0x08;
}

// Connect command (SQE offsets) and data (1024 bytes).
namespace connect {
constexpr uint32_t kRecfmt = 40, kQid = 42, kSqsize = 44, kCattr = 46, kKato = 48;
constexpr uint8_t kCattrDisableSqFlowControl = 0x04;
constexpr uint32_t kDataLen = 1024;
constexpr uint32_t kHostId = 0, kCntlid = 16, kSubnqn = 256, kHostnqn = 512;
constexpr uint32_t kNqnLen = 256;
}  // namespace connect

// Property Get/Set (SQE offsets) and registers.
namespace prop {
constexpr uint32_t kAttrib = 40, kOfst = 44, kValue = 48;
constexpr uint32_t kCap = 0x00, kVs = 0x08, kIntms = 0x0C, kIntmc = 0x10, kCc = 0x14, kCsts = 0x1C,
                   kNssr = 0x20;
}  // namespace prop
// CC and CSTS bits.
constexpr uint32_t kCcEn = 1u << 0;
constexpr uint32_t kCcShnShift = 14;  // 2 bits
constexpr uint32_t kCcIosqesShift = 16, kCcIocqesShift = 20;  // 4 bits each
constexpr uint32_t kCstsRdy = 1u << 0;
constexpr uint32_t kCstsCfs = 1u << 1;
constexpr uint32_t kCstsShstShift = 2;  // 0 normal, 1 occurring, 2 complete
constexpr uint32_t kShstComplete = 2;

// Identify CNS values.
namespace cns {
constexpr uint8_t kNamespace = 0x00, kController = 0x01, kActiveNsList = 0x02,
                  kNsIdDescriptors = 0x03;
}

// Identify Controller (4096 bytes) field offsets.
namespace idc {
constexpr uint32_t kVid = 0, kSsvid = 2, kSn = 4, kMn = 24, kFr = 64, kRab = 72, kIeee = 73,
                   kCmic = 76, kMdts = 77, kCntlid = 78, kVer = 80, kOaes = 92, kCtratt = 96,
                   kCntrltype = 111, kOacs = 256, kAcl = 258, kAerl = 259, kFrmw = 260,
                   kLpa = 261, kElpe = 262, kNpss = 263, kWctemp = 266, kCctemp = 268, kKas = 320,
                   kSqes = 512, kCqes = 513, kMaxcmd = 514, kNn = 516, kOncs = 520, kFuses = 522,
                   kFna = 524, kVwc = 525, kAwun = 526, kAwupf = 528, kAcwu = 532, kSgls = 536,
                   kMnan = 540, kSubnqn = 768, kIoccsz = 1792, kIorcsz = 1796, kIcdoff = 1800,
                   kFcatt = 1802, kMsdbd = 1803, kOfcs = 1804;
constexpr uint32_t kSnLen = 20, kMnLen = 40, kFrLen = 8, kSubnqnLen = 256;
constexpr uint8_t kCntrltypeIo = 1, kCntrltypeDiscovery = 2;
}  // namespace idc

// Identify Namespace (4096 bytes) field offsets.
namespace idns {
constexpr uint32_t kNsze = 0, kNcap = 8, kNuse = 16, kNsfeat = 24, kNlbaf = 25, kFlbas = 26,
                   kNmic = 30, kDlfeat = 33, kNoiob = 46, kNguid = 104, kEui64 = 120,
                   kLbaf0 = 128;
}
// Namespace identification descriptor types.
constexpr uint8_t kNidtEui64 = 1, kNidtNguid = 2, kNidtUuid = 3, kNidtCsi = 4;

// Log page identifiers.
namespace lid {
constexpr uint8_t kErrorInfo = 0x01, kHealth = 0x02, kFirmwareSlot = 0x03,
                  kChangedNsList = 0x04, kCommandEffects = 0x05, kDiscovery = 0x70;
}

// Discovery log page: header 1024 bytes, then 1024-byte entries.
namespace disc {
constexpr uint32_t kGenctr = 0, kNumrec = 8, kRecfmt = 16, kHeaderLen = 1024, kEntryLen = 1024;
constexpr uint32_t kTrtype = 0, kAdrfam = 1, kSubtype = 2, kTreq = 3, kPortid = 4, kCntlid = 6,
                   kAsqsz = 8, kEflags = 10, kTrsvcid = 32, kSubnqn = 256, kTraddr = 512,
                   kTsas = 768;
constexpr uint8_t kTrtypeTcp = 3, kAdrfamIpv4 = 1, kAdrfamIpv6 = 2;
constexpr uint8_t kSubtypeDiscovery = 1, kSubtypeNvme = 2, kSubtypeCurrentDiscovery = 3;
constexpr uint8_t kTreqSecureChannelNotRequired = 2;
constexpr uint16_t kEflagsDupRetInfo = 1u << 0, kEflagsEpcsd = 1u << 1;
}  // namespace disc

// Feature identifiers.
namespace feat {
constexpr uint8_t kArbitration = 0x01, kPowerManagement = 0x02, kTemperatureThreshold = 0x04,
                  kErrorRecovery = 0x05, kVolatileWriteCache = 0x06, kNumberOfQueues = 0x07,
                  kInterruptCoalescing = 0x08, kInterruptVectorConfig = 0x09,
                  kWriteAtomicity = 0x0A, kAsyncEventConfig = 0x0B, kKeepAliveTimer = 0x0F,
                  kHostIdentifier = 0x81;
}

// Asynchronous event types and information.
constexpr uint8_t kAerTypeNotice = 0x2;
constexpr uint8_t kAerInfoNsAttrChanged = 0x00;
constexpr uint8_t kAerInfoDiscoveryLogChanged = 0xF0;
// Async event configuration bits (Set Features 0x0B, CDW11).
constexpr uint32_t kAecNsAttrNotices = 1u << 8;
constexpr uint32_t kAecDiscoveryLogNotices = 1u << 31;

}  // namespace nvme
}  // namespace spdk_node
