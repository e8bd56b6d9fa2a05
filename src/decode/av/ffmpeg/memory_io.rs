//! Everything unsafe in this module: FFmpeg reading from a borrowed byte slice through a
//! custom AVIO context, and reading codec parameters that `ffmpeg-next` does not expose.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::marker::PhantomData;
use std::ptr;

use ffmpeg::ffi;
use ffmpeg::format::context::Input;
use ffmpeg_next as ffmpeg;

/// FFmpeg's own default AVIO buffer size.
const AVIO_BUFFER_SIZE: usize = 32 * 1024;

/// The read position over the bytes, owned by [`MemoryInput`] and handed to FFmpeg as the
/// AVIO context's `opaque`.
struct SliceCursor {
    data: *const u8,
    len: usize,
    position: usize,
}

/// An opened demuxer reading from `&'a [u8]`. Field order does not matter: `Drop` frees
/// the format context, then the AVIO context, then the cursor, in that order.
///
/// Invariant: nothing that keeps the format context alive past this value (a
/// `codec::Parameters` or `stream.codec()`, which hold a reference count on it) is kept
/// beyond a statement; `codec::Context::from_parameters` copies the parameters and lets go.
pub(super) struct MemoryInput<'a> {
    input: Option<Input>,
    avio: *mut ffi::AVIOContext,
    cursor: *mut SliceCursor,
    _bytes: PhantomData<&'a [u8]>,
}

impl<'a> MemoryInput<'a> {
    /// Opens the container with the demuxer named `demuxer` (FFmpeg's short name: `mov`,
    /// `matroska`, …; never probed) and reads its stream info. The demuxer can read the bytes
    /// and nothing else: `format_whitelist` is that demuxer alone, `protocol_whitelist` names
    /// no protocol, and `io_open` (through which every demuxer opens a nested resource: HLS
    /// segments, concat entries, `data:` URLs, MOV external references) refuses everything.
    /// Every allocation made before a failure is freed by `Drop` (the partly built value is
    /// dropped on the error path).
    pub(super) fn open(bytes: &'a [u8], demuxer: &str) -> Result<Self, ffmpeg::Error> {
        Self::open_with(bytes, demuxer, &[])
    }

    /// [`MemoryInput::open`] with more demuxer options first (the tests use it to make a
    /// demuxer as willing to follow references as it can be; ours are set after and win).
    pub(super) fn open_with(
        bytes: &'a [u8],
        demuxer: &str,
        extra_options: &[(&CStr, &CStr)],
    ) -> Result<Self, ffmpeg::Error> {
        let demuxer_name = CString::new(demuxer).map_err(|_| ffmpeg::Error::DemuxerNotFound)?;
        let mut this = MemoryInput {
            input: None,
            avio: ptr::null_mut(),
            cursor: Box::into_raw(Box::new(SliceCursor {
                data: bytes.as_ptr(),
                len: bytes.len(),
                position: 0,
            })),
            _bytes: PhantomData,
        };
        // SAFETY: FFmpeg's documented custom-IO protocol. The buffer is av_malloc'd as
        // avio_alloc_context requires, and becomes the context's (freed in Drop through
        // `(*avio).buffer`, since FFmpeg may replace it); on failure it is freed here. The
        // cursor outlives the AVIO context (Drop order), and the bytes outlive both ('a).
        // With AVFMT_FLAG_CUSTOM_IO, avformat_open_input (which frees the format context
        // itself on failure) and avformat_close_input never free `pb`, so it is freed
        // exactly once, by Drop.
        unsafe {
            let buffer = ffi::av_malloc(AVIO_BUFFER_SIZE) as *mut u8;
            if buffer.is_null() {
                return Err(ffmpeg::Error::Other { errno: ffi::ENOMEM });
            }
            this.avio = ffi::avio_alloc_context(
                buffer,
                AVIO_BUFFER_SIZE as c_int,
                0,
                this.cursor as *mut c_void,
                Some(read_packet),
                None,
                Some(seek),
            );
            if this.avio.is_null() {
                ffi::av_free(buffer as *mut c_void);
                return Err(ffmpeg::Error::Other { errno: ffi::ENOMEM });
            }
            let format = ffi::av_find_input_format(demuxer_name.as_ptr());
            if format.is_null() {
                return Err(ffmpeg::Error::DemuxerNotFound);
            }
            let mut context = ffi::avformat_alloc_context();
            if context.is_null() {
                return Err(ffmpeg::Error::Other { errno: ffi::ENOMEM });
            }
            (*context).pb = this.avio;
            (*context).flags |= ffi::AVFMT_FLAG_CUSTOM_IO as c_int;
            (*context).io_open = Some(refuse_nested_open);
            // The sample's deadline (`decode::budget`), which FFmpeg polls in its long loops
            // (reading stream info); `read_packet` checks it on every read too.
            (*context).interrupt_callback = ffi::AVIOInterruptCB {
                callback: Some(budget_expired),
                opaque: ptr::null_mut(),
            };
            // The options are copied into the context; the dictionary is freed right after
            // (with what the demuxer did not consume).
            let mut options: *mut ffi::AVDictionary = ptr::null_mut();
            for (key, value) in extra_options {
                ffi::av_dict_set(&mut options, key.as_ptr(), value.as_ptr(), 0);
            }
            ffi::av_dict_set(
                &mut options,
                c"protocol_whitelist".as_ptr(),
                c"none".as_ptr(),
                0,
            );
            ffi::av_dict_set(
                &mut options,
                c"format_whitelist".as_ptr(),
                (*format).name,
                0,
            );
            let ret = ffi::avformat_open_input(&mut context, ptr::null(), format, &mut options);
            ffi::av_dict_free(&mut options);
            if ret < 0 {
                return Err(ffmpeg::Error::from(ret));
            }
            // From here the wrapper owns the format context and closes it in its Drop.
            this.input = Some(Input::wrap(context));
            let ret = ffi::avformat_find_stream_info(context, ptr::null_mut());
            if ret < 0 {
                return Err(ffmpeg::Error::from(ret));
            }
        }
        Ok(this)
    }

    pub(super) fn input(&self) -> &Input {
        // `open` returns only with `input` set.
        self.input
            .as_ref()
            .expect("MemoryInput::open sets the input")
    }

    pub(super) fn input_mut(&mut self) -> &mut Input {
        self.input
            .as_mut()
            .expect("MemoryInput::open sets the input")
    }
}

impl Drop for MemoryInput<'_> {
    fn drop(&mut self) {
        // Closes the demuxer first: its read_close may still read through `pb`.
        drop(self.input.take());
        // SAFETY: `avio` and `cursor` were created in `open` and are freed only here;
        // the buffer is whichever one the context holds now.
        unsafe {
            if !self.avio.is_null() {
                ffi::av_freep(&mut (*self.avio).buffer as *mut *mut u8 as *mut c_void);
                ffi::avio_context_free(&mut self.avio);
            }
            if !self.cursor.is_null() {
                drop(Box::from_raw(self.cursor));
                self.cursor = ptr::null_mut();
            }
        }
    }
}

/// `AVFormatContext.io_open` for our inputs: a demuxer asking to open anything (a playlist's
/// segment, a concat entry, a `data:` URL, a MOV reference, a file) is refused. This is the
/// one door every nested open goes through, whatever the protocol whitelist says.
unsafe extern "C" fn refuse_nested_open(
    _context: *mut ffi::AVFormatContext,
    _pb: *mut *mut ffi::AVIOContext,
    _url: *const c_char,
    _flags: c_int,
    _options: *mut *mut ffi::AVDictionary,
) -> c_int {
    ffi::AVERROR(ffi::EPERM)
}

/// `AVFormatContext.interrupt_callback`: non-zero (stop) once the sample's decode budget has
/// run out. It reads a thread-local: FFmpeg calls it on the thread that called FFmpeg.
unsafe extern "C" fn budget_expired(_opaque: *mut c_void) -> c_int {
    crate::decode::budget::expired() as c_int
}

/// AVIO read callback: copies from the cursor's position; `AVERROR_EOF` at the end, and
/// `AVERROR_EXIT` once the sample's decode budget has run out (the demuxer stops there).
///
/// SAFETY (for FFmpeg calling it): `opaque` is the `SliceCursor` of a live MemoryInput
/// (FFmpeg passes back what `open` gave it, and only while the context lives), `data`
/// and `len` describe the borrowed slice, and `buf` has room for `buf_size` bytes. FFmpeg
/// drives one context from one thread, so the `&mut` is unique.
unsafe extern "C" fn read_packet(opaque: *mut c_void, buf: *mut u8, buf_size: c_int) -> c_int {
    if crate::decode::budget::expired() {
        return ffi::AVERROR_EXIT;
    }
    let cursor = unsafe { &mut *(opaque as *mut SliceCursor) };
    let remaining = cursor.len.saturating_sub(cursor.position);
    if remaining == 0 || buf_size <= 0 {
        return ffi::AVERROR_EOF;
    }
    let n = remaining.min(buf_size as usize);
    unsafe { ptr::copy_nonoverlapping(cursor.data.add(cursor.position), buf, n) };
    cursor.position += n;
    n as c_int
}

/// AVIO seek callback: absolute, relative and from-the-end seeks, and `AVSEEK_SIZE`
/// (the total size, which lets demuxers find trailing indexes such as a `moov` at the end).
/// Positions past the end are allowed (reads there return EOF), negative ones are not.
unsafe extern "C" fn seek(opaque: *mut c_void, offset: i64, whence: c_int) -> i64 {
    // SAFETY: as for `read_packet`.
    let cursor = unsafe { &mut *(opaque as *mut SliceCursor) };
    let whence = whence & !(ffi::AVSEEK_FORCE as c_int);
    if whence == ffi::AVSEEK_SIZE as c_int {
        return cursor.len as i64;
    }
    // SEEK_SET, SEEK_CUR, SEEK_END: the C values, fixed by POSIX.
    let base = match whence {
        0 => 0i128,
        1 => cursor.position as i128,
        2 => cursor.len as i128,
        _ => return ffi::AVERROR(ffi::EINVAL) as i64,
    };
    let target = base + offset as i128;
    if target < 0 || target > i64::MAX as i128 {
        return ffi::AVERROR(ffi::EINVAL) as i64;
    }
    cursor.position = target as usize;
    target as i64
}

/// The few `AVCodecParameters` fields `ffmpeg-next` 9 has no accessor for.
pub(super) struct CodecParameters {
    pub codec_id: ffmpeg::codec::Id,
    pub width: u32,
    pub height: u32,
    pub sample_rate: u32,
    pub channels: u32,
}

pub(super) fn codec_parameters(stream: &ffmpeg::Stream) -> CodecParameters {
    let parameters = stream.parameters();
    // SAFETY: `parameters` points at the stream's live AVCodecParameters (it holds the
    // format context alive while it exists); these are plain integer fields.
    let (width, height, sample_rate, channels) = unsafe {
        let p = parameters.as_ptr();
        (
            (*p).width,
            (*p).height,
            (*p).sample_rate,
            (*p).ch_layout.nb_channels,
        )
    };
    CodecParameters {
        codec_id: parameters.id(),
        width: width.max(0) as u32,
        height: height.max(0) as u32,
        sample_rate: sample_rate.max(0) as u32,
        channels: channels.max(0) as u32,
    }
}
