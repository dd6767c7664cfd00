//! gRPC codecs that move OTLP bodies without re-encoding: the exporter sends the bytes delivery
//! already encoded, and the receiver decodes requests itself so malformed ones get
//! `InvalidArgument` (tonic's own codec answers `Internal`).

use std::marker::PhantomData;

use bytes::{Buf, BufMut, Bytes};
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// Client side: sends encoded request bytes as they are, decodes the response as `R`.
#[derive(Debug)]
pub struct ClientCodec<R>(PhantomData<fn() -> R>);

impl<R> Default for ClientCodec<R> {
    fn default() -> Self {
        ClientCodec(PhantomData)
    }
}

/// Server side: hands over request bytes undecoded, encodes the response `R`.
#[derive(Debug)]
pub struct ServerCodec<R>(PhantomData<fn() -> R>);

impl<R> Default for ServerCodec<R> {
    fn default() -> Self {
        ServerCodec(PhantomData)
    }
}

/// Writes bytes unchanged.
#[derive(Debug, Default)]
pub struct BytesEncoder;

impl Encoder for BytesEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

/// Reads the whole message as bytes.
#[derive(Debug, Default)]
pub struct BytesDecoder;

impl Decoder for BytesDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// Encodes a prost message.
#[derive(Debug)]
pub struct MessageEncoder<M>(PhantomData<fn(M)>);

impl<M: prost::Message> Encoder for MessageEncoder<M> {
    type Item = M;
    type Error = Status;

    fn encode(&mut self, item: M, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst).map_err(|e| Status::internal(format!("cannot encode response: {e}")))
    }
}

/// Decodes a prost message.
#[derive(Debug)]
pub struct MessageDecoder<M>(PhantomData<fn() -> M>);

impl<M: prost::Message + Default> Decoder for MessageDecoder<M> {
    type Item = M;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<M>, Status> {
        M::decode(src).map(Some).map_err(|e| Status::internal(format!("cannot decode response: {e}")))
    }
}

impl<R: prost::Message + Default + Send + 'static> Codec for ClientCodec<R> {
    type Encode = Bytes;
    type Decode = R;
    type Encoder = BytesEncoder;
    type Decoder = MessageDecoder<R>;

    fn encoder(&mut self) -> BytesEncoder {
        BytesEncoder
    }

    fn decoder(&mut self) -> MessageDecoder<R> {
        MessageDecoder(PhantomData)
    }
}

impl<R: prost::Message + Send + 'static> Codec for ServerCodec<R> {
    type Encode = R;
    type Decode = Bytes;
    type Encoder = MessageEncoder<R>;
    type Decoder = BytesDecoder;

    fn encoder(&mut self) -> MessageEncoder<R> {
        MessageEncoder(PhantomData)
    }

    fn decoder(&mut self) -> BytesDecoder {
        BytesDecoder
    }
}
